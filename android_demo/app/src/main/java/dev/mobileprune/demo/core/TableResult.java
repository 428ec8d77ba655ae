package dev.mobileprune.demo.core;

import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Writes the result JSON ({@code latency_result.json}) that
 * {@code mobileprune latency-table MODEL.keras --android-assets DIR --from-device FILE --out T}
 * imports: the manifest's id, where and how it was measured, and every model's round medians.
 *
 * <pre>{@code
 * String json = TableResult.toJson(manifest, "android", runtime, machine, rounds);
 * }</pre>
 */
public final class TableResult {
    public static final String FORMAT = "mobileprune-latency-result";
    /** The file the app writes in its external files folder. */
    public static final String FILE_NAME = "latency_result.json";

    private TableResult() {}

    /** The result document; every manifest model must have at least one finite, non-negative ms. */
    public static String toJson(TableManifest manifest, String target, Map<String, String> runtime,
                                Map<String, String> machine, Map<String, List<Double>> rounds) {
        StringBuilder out = new StringBuilder("{\n");
        field(out, "format", quote(FORMAT));
        field(out, "version", String.valueOf(TableManifest.VERSION));
        field(out, "manifest", quote(manifest.id));
        field(out, "target", quote(target));
        field(out, "clock", quote(manifest.clock));
        field(out, "threads", String.valueOf(manifest.threads));
        field(out, "runtime", object(runtime));
        field(out, "machine", object(machine));
        if (rounds.size() != manifest.models.size()) {
            throw new IllegalArgumentException("timed " + rounds.size() + " models, the manifest lists "
                    + manifest.models.size());
        }
        StringBuilder models = new StringBuilder("{");
        for (TableManifest.Entry entry : manifest.models) {
            List<Double> medians = rounds.get(entry.name);
            if (medians == null || medians.isEmpty()) {
                throw new IllegalArgumentException("no timing for model " + entry.name);
            }
            models.append(models.length() > 1 ? ", " : "").append(quote(entry.name)).append(": [");
            for (int i = 0; i < medians.size(); i++) {
                double ms = medians.get(i);
                if (Double.isNaN(ms) || Double.isInfinite(ms) || ms < 0) {
                    throw new IllegalArgumentException("model " + entry.name + " has time " + ms);
                }
                models.append(i > 0 ? ", " : "").append(String.format(Locale.US, "%.6f", ms));
            }
            models.append("]");
        }
        out.append("  \"rounds\": ").append(models).append("}\n}\n");
        return out.toString();
    }

    private static void field(StringBuilder out, String key, String json) {
        out.append("  ").append(quote(key)).append(": ").append(json).append(",\n");
    }

    private static String object(Map<String, String> values) {
        StringBuilder out = new StringBuilder("{");
        for (Map.Entry<String, String> entry : values.entrySet()) {
            out.append(out.length() > 1 ? ", " : "").append(quote(entry.getKey())).append(": ")
                    .append(quote(String.valueOf(entry.getValue())));
        }
        return out.append("}").toString();
    }

    /** A JSON string literal: quotes, backslashes and control characters escaped. */
    public static String quote(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20) {
                out.append(String.format(Locale.US, "\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.append('"').toString();
    }
}
