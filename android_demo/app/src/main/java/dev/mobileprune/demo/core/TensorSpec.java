package dev.mobileprune.demo.core;

import java.util.Arrays;

/**
 * Shape, element type and quantization of one model input or output, as written in a manifest.
 *
 * <p>For quantized types, {@code real = scale * (q - zeroPoint)}; for float32 both are 0.
 *
 * <pre>{@code
 * TensorSpec input = new TensorSpec(new int[] {1, 8, 8, 1}, DType.INT8, 1f / 255, -128);
 * int bytes = input.byteSize(); // 64
 * }</pre>
 */
public final class TensorSpec {
    private final int[] shape;
    public final DType dtype;
    public final float scale;
    public final int zeroPoint;

    public TensorSpec(int[] shape, DType dtype, float scale, int zeroPoint) {
        if (shape == null || shape.length == 0) {
            throw new IllegalArgumentException("tensor shape must have at least one dimension");
        }
        for (int dim : shape) {
            if (dim <= 0) {
                throw new IllegalArgumentException("tensor shape " + Arrays.toString(shape)
                        + " has a non-positive dimension; the app needs fixed shapes");
            }
        }
        if (dtype.isQuantized() && !(scale > 0f)) {
            throw new IllegalArgumentException(dtype.jsonName + " tensor needs a positive scale, got "
                    + scale + "; re-export the model with mobileprune");
        }
        if (dtype.isQuantized() && (zeroPoint < dtype.min || zeroPoint > dtype.max)) {
            throw new IllegalArgumentException("zero point " + zeroPoint + " is outside the "
                    + dtype.jsonName + " range " + dtype.min + ".." + dtype.max);
        }
        this.shape = shape.clone();
        this.dtype = dtype;
        this.scale = scale;
        this.zeroPoint = zeroPoint;
    }

    /** A copy of the shape, batch dimension first. */
    public int[] shape() {
        return shape.clone();
    }

    /** Number of elements. */
    public int elementCount() {
        int count = 1;
        for (int dim : shape) {
            count *= dim;
        }
        return count;
    }

    /** Size of the tensor's buffer in bytes. */
    public int byteSize() {
        return elementCount() * dtype.bytes;
    }

    @Override
    public String toString() {
        String text = dtype.jsonName + Arrays.toString(shape);
        return dtype.isQuantized() ? text + " scale=" + scale + " zero_point=" + zeroPoint : text;
    }
}
