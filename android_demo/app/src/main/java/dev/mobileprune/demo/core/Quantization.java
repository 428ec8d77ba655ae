package dev.mobileprune.demo.core;

/**
 * Affine quantization between real values and int8/uint8: {@code real = scale * (q - zeroPoint)}.
 *
 * <p>Quantizing rounds half away from zero and clamps to the type's range, as TFLite's reference
 * kernels do; Python's side of the drift test computes the same thing with NumPy.
 *
 * <pre>{@code
 * int q = Quantization.quantize(0.5f, 1f / 255, -128, DType.INT8); // 0
 * float x = Quantization.dequantize(q, 1f / 255, -128);            // ~0.502
 * }</pre>
 */
public final class Quantization {
    private Quantization() {}

    /** Quantizes one real value; the division is done in float32 like the interpreter's caller. */
    public static int quantize(float real, float scale, int zeroPoint, DType dtype) {
        if (!dtype.isQuantized()) {
            throw new IllegalArgumentException("quantize needs int8 or uint8, got " + dtype.jsonName);
        }
        float scaled = real / scale;
        if (Float.isNaN(scaled)) {
            throw new IllegalArgumentException("cannot quantize NaN");
        }
        // In double, |x| + 0.5 is exact for every float that can round up (|x| >= 0.5), so this
        // is std::round; float arithmetic would turn 0.49999997f + 0.5f into 1.
        double rounded = Math.floor(Math.abs((double) scaled) + 0.5);
        // Clamp in double: huge or infinite inputs must saturate, not overflow a long.
        double q = (scaled < 0 ? -rounded : rounded) + zeroPoint;
        return (int) Math.max(dtype.min, Math.min(dtype.max, q));
    }

    /** Maps a quantized value back to the real value it stands for. */
    public static float dequantize(int quantized, float scale, int zeroPoint) {
        return scale * (quantized - zeroPoint);
    }
}
