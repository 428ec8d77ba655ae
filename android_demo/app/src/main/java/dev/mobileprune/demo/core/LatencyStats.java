package dev.mobileprune.demo.core;

import java.util.Arrays;

/**
 * Summary of timed runs in milliseconds: median, p90, mean, min, max.
 *
 * <p>Percentiles interpolate linearly between the two nearest sorted samples (NumPy's default),
 * so they compare directly with {@code mobileprune bench} on a desktop.
 *
 * <pre>{@code
 * LatencyStats stats = LatencyStats.fromNanos(new long[] {1_000_000, 3_000_000});
 * stats.medianMs; // 2.0
 * }</pre>
 */
public final class LatencyStats {
    public final int runs;
    public final double medianMs;
    public final double p90Ms;
    public final double meanMs;
    public final double minMs;
    public final double maxMs;

    private LatencyStats(double[] sortedMs) {
        runs = sortedMs.length;
        medianMs = percentile(sortedMs, 50);
        p90Ms = percentile(sortedMs, 90);
        double sum = 0;
        for (double value : sortedMs) {
            sum += value;
        }
        meanMs = sum / runs;
        minMs = sortedMs[0];
        maxMs = sortedMs[runs - 1];
    }

    /** Summarises run durations given in nanoseconds; needs at least one run. */
    public static LatencyStats fromNanos(long[] nanos) {
        if (nanos.length == 0) {
            throw new IllegalArgumentException("no timed runs: use at least 1 run");
        }
        double[] ms = new double[nanos.length];
        for (int i = 0; i < nanos.length; i++) {
            if (nanos[i] < 0) {
                throw new IllegalArgumentException("negative duration " + nanos[i] + " ns");
            }
            ms[i] = nanos[i] / 1e6;
        }
        Arrays.sort(ms);
        return new LatencyStats(ms);
    }

    /** The {@code percent}-th percentile of sorted values, linear interpolation between ranks. */
    public static double percentile(double[] sorted, double percent) {
        if (sorted.length == 0 || percent < 0 || percent > 100) {
            throw new IllegalArgumentException("percentile needs values and 0 <= percent <= 100");
        }
        double rank = percent / 100.0 * (sorted.length - 1);
        int below = (int) Math.floor(rank);
        int above = (int) Math.ceil(rank);
        return sorted[below] + (sorted[above] - sorted[below]) * (rank - below);
    }
}
