package dev.mobileprune.demo.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * One model's manifest ({@code <stem>.json} in the assets), written by
 * {@code mobileprune.android.assets.write_android_assets}.
 *
 * <pre>{@code
 * ModelManifest manifest = ModelManifest.parse(jsonText);
 * ByteBuffer input = TensorCodec.allocate(manifest.input);
 * }</pre>
 */
public final class ModelManifest {
    /** The only manifest format this app reads. */
    public static final String FORMAT = "mobileprune.android/1";

    public final String name;
    public final String description;
    public final boolean baseline;
    public final int order;
    public final String file;
    public final long fileBytes;
    public final String samples;
    public final TensorSpec input;
    public final TensorSpec output;
    public final List<String> labels;

    private ModelManifest(Fields fields) {
        this.name = fields.string("name");
        this.description = fields.string("description");
        this.baseline = fields.bool("baseline");
        this.order = (int) fields.integer("order");
        this.file = fields.string("file");
        this.fileBytes = fields.integer("file_bytes");
        this.samples = fields.string("samples");
        this.input = fields.tensor("input");
        this.output = fields.tensor("output");
        this.labels = Collections.unmodifiableList(fields.strings("labels"));
        int classes = output.shape()[output.shape().length - 1];
        if (labels.size() != classes) {
            throw new IllegalArgumentException("manifest \"" + name + "\": " + labels.size()
                    + " labels for " + classes + " output classes; re-run the exporter");
        }
    }

    /** Parses and validates a manifest; errors name the manifest field and the fix. */
    public static ModelManifest parse(String json) {
        Map<String, Object> root = Json.parseObject(json);
        Object format = root.get("format");
        if (!FORMAT.equals(format)) {
            throw new IllegalArgumentException("not a mobileprune manifest: format is " + format
                    + ", expected " + FORMAT + " (write it with mobileprune --android-assets)");
        }
        return new ModelManifest(new Fields(root, "manifest"));
    }

    /** Typed, checked access to a JSON object's fields. */
    private static final class Fields {
        private final Map<String, Object> values;
        private final String where;

        Fields(Map<String, Object> values, String where) {
            this.values = values;
            this.where = where;
        }

        private Object get(String key, Class<?> type, String typeName) {
            Object value = values.get(key);
            if (!type.isInstance(value)) {
                throw new IllegalArgumentException(where + " field \"" + key + "\" must be "
                        + typeName + ", got " + (value == null ? "nothing" : value));
            }
            return value;
        }

        String string(String key) {
            return (String) get(key, String.class, "a string");
        }

        boolean bool(String key) {
            return (Boolean) get(key, Boolean.class, "true or false");
        }

        long integer(String key) {
            double value = (Double) get(key, Double.class, "a number");
            return checkedInteger(key, value);
        }

        private long checkedInteger(String key, double value) {
            if (value != Math.rint(value) || Math.abs(value) > (1L << 53)) {
                throw new IllegalArgumentException(where + " field \"" + key
                        + "\" must be a whole number, got " + value);
            }
            return (long) value;
        }

        List<?> list(String key) {
            return (List<?>) get(key, List.class, "an array");
        }

        List<String> strings(String key) {
            List<String> out = new ArrayList<String>();
            for (Object item : list(key)) {
                if (!(item instanceof String)) {
                    throw new IllegalArgumentException(where + " field \"" + key
                            + "\" must hold strings, got " + item);
                }
                out.add((String) item);
            }
            return out;
        }

        @SuppressWarnings("unchecked")
        TensorSpec tensor(String key) {
            Map<String, Object> object = (Map<String, Object>) get(key, Map.class, "an object");
            Fields tensor = new Fields(object, where + " " + key);
            List<?> dims = tensor.list("shape");
            int[] shape = new int[dims.size()];
            for (int i = 0; i < shape.length; i++) {
                Object dim = dims.get(i);
                if (!(dim instanceof Double)) {
                    throw new IllegalArgumentException(where + " " + key + " shape must hold numbers");
                }
                shape[i] = (int) tensor.checkedInteger("shape", (Double) dim);
            }
            double scale = (Double) tensor.get("scale", Double.class, "a number");
            return new TensorSpec(shape, DType.fromName(tensor.string("dtype")),
                    (float) scale, (int) tensor.integer("zero_point"));
        }
    }
}
