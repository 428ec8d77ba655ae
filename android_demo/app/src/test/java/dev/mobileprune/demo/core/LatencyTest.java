package dev.mobileprune.demo.core;

import static org.junit.Assert.assertEquals;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.junit.Test;

public class LatencyTest {
    @Test
    public void percentilesInterpolateLikeNumpy() {
        // numpy.percentile([1, 2, 3, 4], [50, 90]) == [2.5, 3.7]
        double[] sorted = {1, 2, 3, 4};
        assertEquals(2.5, LatencyStats.percentile(sorted, 50), 1e-12);
        assertEquals(3.7, LatencyStats.percentile(sorted, 90), 1e-12);
        assertEquals(1.0, LatencyStats.percentile(sorted, 0), 0);
        assertEquals(4.0, LatencyStats.percentile(sorted, 100), 0);
    }

    @Test
    public void statsSortNanosAndReportMilliseconds() {
        LatencyStats stats = LatencyStats.fromNanos(new long[] {4_000_000, 1_000_000, 3_000_000, 2_000_000});
        assertEquals(4, stats.runs);
        assertEquals(2.5, stats.medianMs, 1e-12);
        assertEquals(3.7, stats.p90Ms, 1e-12);
        assertEquals(2.5, stats.meanMs, 1e-12);
        assertEquals(1.0, stats.minMs, 0);
        assertEquals(4.0, stats.maxMs, 0);
    }

    @Test(expected = IllegalArgumentException.class)
    public void statsNeedAtLeastOneRun() {
        LatencyStats.fromNanos(new long[0]);
    }

    @Test
    public void benchmarkTimesOnlyTheRunnerAfterWarmUp() {
        final long[] now = {0};
        NanoClock clock = new NanoClock() {
            @Override
            public long nanoTime() {
                return now[0];
            }
        };
        final List<ByteBuffer> seen = new ArrayList<ByteBuffer>();
        ModelRunner runner = new ModelRunner() {
            @Override
            public void run(ByteBuffer input, ByteBuffer output) {
                seen.add(input);
                // The k-th call (1-based) takes k milliseconds on the fake clock.
                now[0] += seen.size() * 1_000_000L;
                assertEquals(0, input.position());
                assertEquals(0, output.position());
                input.position(input.limit());
                output.position(output.limit());
            }
        };
        ByteBuffer[] inputs = {ByteBuffer.allocate(4), ByteBuffer.allocate(4), ByteBuffer.allocate(4)};
        LatencyStats stats = LatencyBenchmark.measure(runner, inputs, ByteBuffer.allocate(4), 2, 5, clock);
        // Warm-up calls 1-2 are dropped; timed calls 3..7 take 3..7 ms.
        assertEquals(7, seen.size());
        assertEquals(5, stats.runs);
        assertEquals(5.0, stats.medianMs, 1e-12);
        assertEquals(6.6, stats.p90Ms, 1e-12);
        assertEquals(3.0, stats.minMs, 0);
        // Inputs are cycled: warm-up uses 0, 1; timed runs use 0, 1, 2, 0, 1.
        assertEquals(inputs[0], seen.get(2));
        assertEquals(inputs[2], seen.get(4));
        assertEquals(inputs[1], seen.get(6));
    }

    @Test
    public void speedupIsBaselineMedianOverOwnMedian() {
        ModelManifest manifest = ModelManifest.parse(Fixtures.floatManifest("m", true, 0));
        ModelResult baseline = new ModelResult(manifest, 9, 10, 1.0,
                LatencyStats.fromNanos(new long[] {3_000_000}));
        ModelResult faster = new ModelResult(manifest, 10, 10, 1.0,
                LatencyStats.fromNanos(new long[] {1_000_000}));
        assertEquals(3.0, faster.speedupOver(baseline), 1e-12);
        assertEquals(1.0, baseline.speedupOver(baseline), 0);
        assertEquals(0.9, baseline.accuracy(), 1e-12);
    }
}
