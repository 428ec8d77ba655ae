package dev.mobileprune.demo.core;

/**
 * Element types a model input or output may have in the app, with their byte width and range.
 *
 * <pre>{@code
 * DType dtype = DType.fromName("int8"); // bytes 1, range -128..127
 * }</pre>
 */
public enum DType {
    FLOAT32("float32", 4, 0, 0),
    INT8("int8", 1, -128, 127),
    UINT8("uint8", 1, 0, 255);

    /** The name used in manifests (NumPy's spelling). */
    public final String jsonName;
    /** Bytes per element. */
    public final int bytes;
    /** Smallest quantized value (integer types only). */
    public final int min;
    /** Largest quantized value (integer types only). */
    public final int max;

    DType(String jsonName, int bytes, int min, int max) {
        this.jsonName = jsonName;
        this.bytes = bytes;
        this.min = min;
        this.max = max;
    }

    /** Whether values of this type are quantized integers. */
    public boolean isQuantized() {
        return this != FLOAT32;
    }

    /** Looks up a manifest dtype name; throws IllegalArgumentException listing the supported ones. */
    public static DType fromName(String name) {
        for (DType dtype : values()) {
            if (dtype.jsonName.equals(name)) {
                return dtype;
            }
        }
        throw new IllegalArgumentException("unsupported dtype \"" + name
                + "\": the app runs float32, int8 or uint8 tensors; re-export the model");
    }
}
