package dev.mobileprune.demo.core;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Drift check of the table mode against Python (run by tests/android/test_table_mode.py).
 *
 * <p>Reads the {@code latency_manifest.json} Python wrote with the app's own parser, "times" every
 * model it lists with a fake clock (model i takes i+1 microseconds per run) under the app's rounds
 * policy, and writes the result JSON the app would write; Python then imports it.
 *
 * <pre>{@code
 * java -cp classes:junit4.jar dev.mobileprune.demo.core.TableModeCheck TABLE_DIR RESULT.json
 * }</pre>
 */
public final class TableModeCheck {
    private TableModeCheck() {}

    public static void main(String[] args) throws IOException {
        if (args.length != 2) {
            System.err.println("usage: TableModeCheck TABLE_DIR RESULT.json");
            System.exit(2);
        }
        byte[] text = Files.readAllBytes(new File(args[0], TableManifest.FILE_NAME).toPath());
        TableManifest manifest = TableManifest.parse(new String(text, StandardCharsets.UTF_8));
        final long[] now = {0};
        NanoClock clock = new NanoClock() {
            @Override
            public long nanoTime() {
                return now[0];
            }
        };
        Map<String, Runnable> invokes = new LinkedHashMap<String, Runnable>();
        for (int i = 0; i < manifest.models.size(); i++) {
            final long nanos = 1000L * (i + 1);
            invokes.put(manifest.models.get(i).name, new Runnable() {
                @Override
                public void run() {
                    now[0] += nanos;
                }
            });
        }
        Map<String, List<Double>> rounds = TableTimer.measure(invokes, manifest.rounds,
                manifest.minSeconds, manifest.minRuns, clock, clock, null);
        Map<String, String> runtime = new LinkedHashMap<String, String>();
        runtime.put("name", "litert-java");
        runtime.put("version", "test");
        Map<String, String> machine = new LinkedHashMap<String, String>();
        machine.put("model", "desktop JVM");
        String json = TableResult.toJson(manifest, "android", runtime, machine, rounds);
        Files.write(new File(args[1]).toPath(), json.getBytes(StandardCharsets.UTF_8));
        System.out.println("models=" + manifest.models.size());
    }
}
