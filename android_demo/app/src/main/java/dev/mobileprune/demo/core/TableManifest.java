package dev.mobileprune.demo.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The latency-table manifest ({@code latency_manifest.json}) that
 * {@code mobileprune latency-table MODEL.keras --android-assets DIR} writes beside one tiny
 * {@code .tflite} per op configuration; the app's table mode times every file it lists.
 *
 * <p>Strict like the Python reader ({@code mobileprune.runtime.table_runner.check_manifest}):
 * a missing, unknown or malformed field is one {@link IllegalArgumentException} line naming it.
 *
 * <pre>{@code
 * TableManifest manifest = TableManifest.parse(jsonText);
 * for (TableManifest.Entry entry : manifest.models) { ... entry.file ... }
 * }</pre>
 */
public final class TableManifest {
    public static final String FORMAT = "mobileprune-latency-manifest";
    public static final int VERSION = 1;
    /** The file name inside the table folder. */
    public static final String FILE_NAME = "latency_manifest.json";
    /** The assets subfolder the app reads the table from (or {@code files/table} when pushed). */
    public static final String FOLDER = "table";

    private static final Set<String> REQUIRED = new HashSet<String>(Arrays.asList("format", "version",
            "id", "dtype", "threads", "clock", "rounds", "min_seconds", "min_runs", "models"));
    private static final Set<String> OPTIONAL = new HashSet<String>(Arrays.asList("step", "levels",
            "model", "fingerprint", "calibration_widths", "half_widths"));
    private static final Set<String> ENTRY_KEYS = new HashSet<String>(Arrays.asList("name", "file",
            "role", "key", "what"));
    private static final String FIX = "; write it again with mobileprune latency-table MODEL.keras "
            + "--android-assets DIR";

    /** One model to time. */
    public static final class Entry {
        public final String name;
        public final String file;
        public final String role;

        Entry(String name, String file, String role) {
            this.name = name;
            this.file = file;
            this.role = role;
        }
    }

    public final String id;
    public final String dtype;
    public final int threads;
    /** {@code "cpu"} (the invoking thread's CPU time; 1 thread) or {@code "wall"}. */
    public final String clock;
    public final int rounds;
    public final double minSeconds;
    public final int minRuns;
    public final List<Entry> models;

    private TableManifest(Map<String, Object> root) {
        id = string(root, "id");
        dtype = string(root, "dtype");
        if (!dtype.equals("float32") && !dtype.equals("int8")) {
            throw fail("dtype must be float32 or int8, got " + dtype);
        }
        threads = positive(root, "threads");
        rounds = positive(root, "rounds");
        minRuns = positive(root, "min_runs");
        minSeconds = number(root, "min_seconds");
        clock = string(root, "clock");
        if (!clock.equals("cpu") && !clock.equals("wall")) {
            throw fail("clock must be cpu or wall, got " + clock);
        }
        if (clock.equals("cpu") && threads != 1) {
            throw fail("the cpu clock times one thread, but threads is " + threads);
        }
        models = Collections.unmodifiableList(entries(root.get("models")));
    }

    /** Parses and validates a manifest; errors name the field and the fix. */
    public static TableManifest parse(String json) {
        Map<String, Object> root;
        try {
            root = Json.parseObject(json);
        } catch (IllegalArgumentException error) {
            throw fail(error.getMessage());
        }
        if (!FORMAT.equals(root.get("format"))) {
            throw fail("not a latency-table manifest: format is " + root.get("format") + ", expected "
                    + FORMAT);
        }
        Set<String> missing = new HashSet<String>(REQUIRED);
        missing.removeAll(root.keySet());
        Set<String> unknown = new HashSet<String>(root.keySet());
        unknown.removeAll(REQUIRED);
        unknown.removeAll(OPTIONAL);
        if (!missing.isEmpty() || !unknown.isEmpty()) {
            throw fail("missing keys " + new java.util.TreeSet<String>(missing) + ", unknown keys "
                    + new java.util.TreeSet<String>(unknown));
        }
        Object version = root.get("version");
        if (!(version instanceof Double) || (Double) version != VERSION) {
            throw fail("manifest version " + version + ", expected " + VERSION);
        }
        return new TableManifest(root);
    }

    @SuppressWarnings("unchecked")
    private static List<Entry> entries(Object value) {
        if (!(value instanceof List) || ((List<?>) value).isEmpty()) {
            throw fail("models must be a non-empty array");
        }
        List<Entry> out = new ArrayList<Entry>();
        Set<String> names = new HashSet<String>();
        int overheads = 0;
        for (Object item : (List<Object>) value) {
            if (!(item instanceof Map) || !((Map<String, Object>) item).keySet().equals(ENTRY_KEYS)) {
                throw fail("models[" + out.size() + "] must have exactly the keys " + ENTRY_KEYS);
            }
            Map<String, Object> entry = (Map<String, Object>) item;
            String name = string(entry, "name");
            String file = string(entry, "file");
            String role = string(entry, "role");
            string(entry, "key");
            if (!(entry.get("what") instanceof String)) {
                throw fail("models[" + out.size() + "] field \"what\" must be a string");
            }
            if (file.contains("/") || file.contains("\\") || file.indexOf(0) >= 0 || file.startsWith(".")) {
                throw fail("models[" + out.size() + "] file " + file + " must be a plain file name");
            }
            if (!Arrays.asList("config", "overhead", "dense", "uniform", "half").contains(role)) {
                throw fail("models[" + out.size() + "] has role " + role);
            }
            if (!names.add(name)) {
                throw fail("model name " + name + " appears twice");
            }
            overheads += role.equals("overhead") ? 1 : 0;
            out.add(new Entry(name, file, role));
        }
        if (overheads != 1) {
            throw fail("needs exactly one model with role overhead (the empty model)");
        }
        return out;
    }

    private static String string(Map<String, Object> object, String key) {
        Object value = object.get(key);
        if (!(value instanceof String) || ((String) value).isEmpty()) {
            throw fail("field \"" + key + "\" must be a non-empty string, got " + value);
        }
        return (String) value;
    }

    private static double number(Map<String, Object> object, String key) {
        Object value = object.get(key);
        if (!(value instanceof Double) || ((Double) value).isNaN() || ((Double) value).isInfinite()
                || (Double) value < 0) {
            throw fail("field \"" + key + "\" must be a number >= 0, got " + value);
        }
        return (Double) value;
    }

    private static int positive(Map<String, Object> object, String key) {
        Object value = object.get(key);
        if (!(value instanceof Double) || (Double) value != Math.rint((Double) value)
                || (Double) value < 1 || (Double) value > Integer.MAX_VALUE) {
            throw fail("field \"" + key + "\" must be a whole number >= 1, got " + value);
        }
        return (int) Math.round((Double) value);
    }

    private static IllegalArgumentException fail(String problem) {
        return new IllegalArgumentException("latency manifest: " + problem + FIX);
    }
}
