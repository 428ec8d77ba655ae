package dev.mobileprune.demo.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The rounds policy of mobileprune's latency tables, for the app's table mode.
 *
 * <p>Every model is loaded first; then {@code rounds} interleaved rounds time every model once
 * per round, in turn (so a burst of other work hits them all alike). In a round a model runs
 * once to warm the caches, then at least {@code minRuns} times and for at least
 * {@code minSeconds} of wall time; the round's value is the median of those runs in ms (the
 * mean of the two middle runs for an even count, as NumPy's median). Python takes the minimum
 * over rounds when it imports the result. Same policy as
 * {@code mobileprune.latency.table.time_rounds} and {@code mobileprune.runtime.table_runner}.
 *
 * <pre>{@code
 * Map<String, List<Double>> rounds = TableTimer.measure(invokes, 3, 0.01, 5, cpuClock, NanoClock.SYSTEM, null);
 * }</pre>
 */
public final class TableTimer {
    /** Told after every model of every round: (done, total). */
    public interface Progress {
        void step(int done, int total);
    }

    private TableTimer() {}

    /** Name -> the median ms of each round. {@code timer} times a run; {@code wall} bounds a round. */
    public static Map<String, List<Double>> measure(Map<String, Runnable> invokes, int rounds,
                                                    double minSeconds, int minRuns, NanoClock timer,
                                                    NanoClock wall, Progress progress) {
        if (invokes.isEmpty() || rounds < 1 || minRuns < 1 || minSeconds < 0) {
            throw new IllegalArgumentException("need models, rounds >= 1, minRuns >= 1 and "
                    + "minSeconds >= 0");
        }
        Map<String, List<Double>> found = new LinkedHashMap<String, List<Double>>();
        for (String name : invokes.keySet()) {
            found.put(name, new ArrayList<Double>());
        }
        int done = 0;
        int total = rounds * invokes.size();
        for (int round = 0; round < rounds; round++) {
            for (Map.Entry<String, Runnable> model : invokes.entrySet()) {
                found.get(model.getKey()).add(roundMedian(model.getValue(), minSeconds, minRuns,
                        timer, wall));
                done++;
                if (progress != null) {
                    progress.step(done, total);
                }
            }
        }
        return found;
    }

    /** One warm-up run, then the median ms of at least minRuns runs lasting at least minSeconds. */
    public static double roundMedian(Runnable invoke, double minSeconds, int minRuns,
                                     NanoClock timer, NanoClock wall) {
        invoke.run();
        List<Long> samples = new ArrayList<Long>();
        long started = wall.nanoTime();
        while (samples.size() < minRuns || wall.nanoTime() - started < minSeconds * 1e9) {
            long begin = timer.nanoTime();
            invoke.run();
            samples.add(timer.nanoTime() - begin);
        }
        double[] ms = new double[samples.size()];
        for (int i = 0; i < ms.length; i++) {
            ms[i] = samples.get(i) / 1e6;
        }
        Arrays.sort(ms);
        return LatencyStats.percentile(ms, 50);
    }
}
