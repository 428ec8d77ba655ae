package dev.mobileprune.demo.core;

/**
 * What the app measured for one model: accuracy on the samples, init time and latency.
 *
 * <pre>{@code
 * ModelResult result = new ModelResult(manifest, correct, samples.count(), initMs, stats);
 * double speedup = result.speedupOver(baselineResult); // > 1 means faster than the baseline
 * }</pre>
 */
public final class ModelResult {
    public final ModelManifest manifest;
    public final int correct;
    public final int total;
    /** Interpreter creation plus tensor allocation, model bytes already in memory. */
    public final double initMs;
    public final LatencyStats latency;

    public ModelResult(ModelManifest manifest, int correct, int total, double initMs,
                       LatencyStats latency) {
        if (total <= 0 || correct < 0 || correct > total) {
            throw new IllegalArgumentException("need 0 <= correct <= total and total > 0, got "
                    + correct + "/" + total);
        }
        this.manifest = manifest;
        this.correct = correct;
        this.total = total;
        this.initMs = initMs;
        this.latency = latency;
    }

    /** Share of samples predicted correctly, in [0, 1]. */
    public double accuracy() {
        return (double) correct / total;
    }

    /** Baseline median latency divided by this model's; 1.0 for the baseline itself. */
    public double speedupOver(ModelResult baseline) {
        return baseline.latency.medianMs / latency.medianMs;
    }
}
