package dev.mobileprune.demo.core;

import java.nio.ByteBuffer;

/**
 * Times single inferences: warm-up runs first (discarded), then timed runs.
 *
 * <p>Only the runner call sits between the two clock reads; buffer rewinds and input choice
 * happen outside, so the numbers are the interpreter's, as {@code benchmark_model} reports them.
 * Inputs are cycled so a model cannot profit from seeing one input over and over.
 *
 * <pre>{@code
 * LatencyStats stats = LatencyBenchmark.measure(runner, inputs, output, 20, 200, NanoClock.SYSTEM);
 * }</pre>
 */
public final class LatencyBenchmark {
    private LatencyBenchmark() {}

    public static LatencyStats measure(ModelRunner runner, ByteBuffer[] inputs, ByteBuffer output,
                                       int warmupRuns, int timedRuns, NanoClock clock) {
        if (inputs.length == 0) {
            throw new IllegalArgumentException("no inputs to time: the sample set is empty");
        }
        if (warmupRuns < 0 || timedRuns < 1) {
            throw new IllegalArgumentException("need warmupRuns >= 0 and timedRuns >= 1, got "
                    + warmupRuns + " and " + timedRuns);
        }
        for (int i = 0; i < warmupRuns; i++) {
            runOnce(runner, inputs[i % inputs.length], output);
        }
        long[] nanos = new long[timedRuns];
        for (int i = 0; i < timedRuns; i++) {
            ByteBuffer input = inputs[i % inputs.length];
            input.rewind();
            output.clear();
            long start = clock.nanoTime();
            runner.run(input, output);
            nanos[i] = clock.nanoTime() - start;
        }
        return LatencyStats.fromNanos(nanos);
    }

    private static void runOnce(ModelRunner runner, ByteBuffer input, ByteBuffer output) {
        input.rewind();
        output.clear();
        runner.run(input, output);
    }
}
