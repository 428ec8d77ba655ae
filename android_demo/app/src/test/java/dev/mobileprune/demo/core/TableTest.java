package dev.mobileprune.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class TableTest {
    static final String MANIFEST = "{\"format\": \"mobileprune-latency-manifest\", \"version\": 1, "
            + "\"id\": \"abc123\", \"dtype\": \"int8\", \"threads\": 1, \"clock\": \"cpu\", "
            + "\"rounds\": 3, \"min_seconds\": 0.01, \"min_runs\": 5, \"step\": 8, \"levels\": 4, "
            + "\"models\": [{\"name\": \"latency_0000\", \"file\": \"latency_0000.tflite\", "
            + "\"role\": \"config\", \"key\": \"k0\", \"what\": \"Conv2D 3->8\"}, "
            + "{\"name\": \"latency_overhead\", \"file\": \"latency_overhead.tflite\", "
            + "\"role\": \"overhead\", \"key\": \"__overhead__\", \"what\": \"RELU of 8\"}]}";

    @Test
    public void manifestReadsEveryField() {
        TableManifest manifest = TableManifest.parse(MANIFEST);
        assertEquals("abc123", manifest.id);
        assertEquals("int8", manifest.dtype);
        assertEquals(1, manifest.threads);
        assertEquals("cpu", manifest.clock);
        assertEquals(3, manifest.rounds);
        assertEquals(0.01, manifest.minSeconds, 0);
        assertEquals(5, manifest.minRuns);
        assertEquals(2, manifest.models.size());
        assertEquals("latency_0000.tflite", manifest.models.get(0).file);
        assertEquals("overhead", manifest.models.get(1).role);
    }

    @Test
    public void everyMalformedManifestIsOneLineNamingTheProblem() {
        String[][] cases = {
            {"\"version\": 1", "\"version\": 2", "version"},
            {"\"threads\": 1", "\"threads\": 0", "threads"},
            {"\"threads\": 1", "\"threads\": 1.5", "threads"},
            {"\"clock\": \"cpu\"", "\"clock\": \"tsc\"", "clock"},
            {"\"threads\": 1", "\"threads\": 2", "cpu clock"},
            {"\"min_seconds\": 0.01", "\"min_seconds\": -1", "min_seconds"},
            {"\"dtype\": \"int8\"", "\"dtype\": \"int4\"", "dtype"},
            {"\"rounds\": 3, ", "", "missing keys [rounds]"},
            {"\"step\": 8", "\"stride\": 8", "unknown keys [stride]"},
            {"\"role\": \"overhead\"", "\"role\": \"config\"", "exactly one model with role overhead"},
            {"\"role\": \"config\"", "\"role\": \"other\"", "role other"},
            {"\"file\": \"latency_0000.tflite\"", "\"file\": \"../x.tflite\"", "plain file name"},
            {"\"name\": \"latency_overhead\"", "\"name\": \"latency_0000\"", "appears twice"},
            {"\"what\": \"RELU of 8\"", "\"what\": 8", "what"},
            {"\"what\": \"RELU of 8\"}", "\"what\": \"RELU of 8\", \"x\": 1}", "exactly the keys"},
            {"\"format\": \"mobileprune-latency-manifest\"", "\"format\": \"x\"", "format is x"},
            {"]}", "]", "JSON"},
        };
        for (String[] c : cases) {
            assertTrue(c[0], MANIFEST.contains(c[0]));
            try {
                TableManifest.parse(MANIFEST.replace(c[0], c[1]));
                fail("accepted: " + c[1]);
            } catch (IllegalArgumentException expected) {
                String message = expected.getMessage();
                assertTrue(message + " lacks " + c[2], message.contains(c[2]));
                assertTrue(message, !message.contains("\n"));
            }
        }
    }

    @Test
    public void roundsInterleaveModelsAndKeepTheMedianOfEachRound() {
        final long[] now = {0};
        final List<String> order = new ArrayList<String>();
        NanoClock clock = new NanoClock() {
            @Override
            public long nanoTime() {
                return now[0];
            }
        };
        Map<String, Runnable> invokes = new LinkedHashMap<String, Runnable>();
        for (final String name : new String[] {"a", "b"}) {
            invokes.put(name, new Runnable() {
                private int calls;

                @Override
                public void run() {
                    order.add(name);
                    // Call k of this model takes (k mod 5) ms, 10x more for "b".
                    now[0] += (name.equals("b") ? 10 : 1) * 1_000_000L * (calls++ % 5);
                }
            });
        }
        final List<Integer> steps = new ArrayList<Integer>();
        Map<String, List<Double>> rounds = TableTimer.measure(invokes, 2, 0.0, 3, clock, clock,
                new TableTimer.Progress() {
                    @Override
                    public void step(int done, int total) {
                        steps.add(done * 10 + total);
                    }
                });
        // Per round: one warm-up call, then 3 timed ones: round 1 times 1,2,3 ms, round 2 0,1,2 ms.
        assertEquals(Arrays.asList(2.0, 1.0), rounds.get("a"));
        assertEquals(Arrays.asList(20.0, 10.0), rounds.get("b"));
        assertEquals(Arrays.asList("a", "a", "a", "a", "b", "b", "b", "b"), order.subList(0, 8));
        assertEquals(Arrays.asList(14, 24, 34, 44), steps);
    }

    @Test
    public void aRoundRunsAtLeastMinSecondsOfWallTime() {
        final long[] wall = {0};
        final int[] calls = {0};
        NanoClock wallClock = new NanoClock() {
            @Override
            public long nanoTime() {
                return wall[0];
            }
        };
        Runnable invoke = new Runnable() {
            @Override
            public void run() {
                calls[0]++;
                wall[0] += 1_000_000L; // 1 ms per call
            }
        };
        TableTimer.roundMedian(invoke, 0.010, 2, wallClock, wallClock);
        assertEquals(1 + 10, calls[0]);
    }

    @Test
    public void resultJsonHasEveryModelAndRefusesBadTimes() {
        TableManifest manifest = TableManifest.parse(MANIFEST);
        Map<String, List<Double>> rounds = new LinkedHashMap<String, List<Double>>();
        rounds.put("latency_0000", Arrays.asList(0.5, 0.25));
        rounds.put("latency_overhead", Arrays.asList(0.0125));
        Map<String, String> runtime = new LinkedHashMap<String, String>();
        runtime.put("name", "litert \"java\"");
        Map<String, Object> parsed = Json.parseObject(TableResult.toJson(manifest, "android", runtime,
                new LinkedHashMap<String, String>(), rounds));
        assertEquals(TableResult.FORMAT, parsed.get("format"));
        assertEquals("abc123", parsed.get("manifest"));
        assertEquals("cpu", parsed.get("clock"));
        assertEquals(1.0, parsed.get("threads"));
        assertEquals("litert \"java\"", ((Map<?, ?>) parsed.get("runtime")).get("name"));
        assertEquals(Arrays.asList(0.5, 0.25), ((Map<?, ?>) parsed.get("rounds")).get("latency_0000"));
        for (double bad : new double[] {-1.0, Double.NaN, Double.POSITIVE_INFINITY}) {
            rounds.put("latency_overhead", Arrays.asList(bad));
            try {
                TableResult.toJson(manifest, "android", runtime, runtime, rounds);
                fail("accepted " + bad);
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage().contains("latency_overhead"));
            }
        }
        rounds.remove("latency_overhead");
        try {
            TableResult.toJson(manifest, "android", runtime, runtime, rounds);
            fail("accepted a missing model");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage().contains("timed 1 models"));
        }
    }
}
