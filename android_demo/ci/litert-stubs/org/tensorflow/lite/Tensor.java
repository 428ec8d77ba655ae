package org.tensorflow.lite;

/** Stand-in for LiteRT's {@code Tensor}: the input or output tensor of an interpreter. */
public interface Tensor {
    /** Element type of the tensor. */
    DataType dataType();

    /** Dimensions of the tensor. */
    int[] shape();

    /** Size of the tensor's data in bytes. */
    int numBytes();

    /** Scale and zero point of a quantized tensor (both 0 when it is not quantized). */
    QuantizationParams quantizationParams();

    /** Stand-in for {@code Tensor.QuantizationParams}: {@code real = scale * (q - zeroPoint)}. */
    class QuantizationParams {
        private final float scale;
        private final int zeroPoint;

        public QuantizationParams(float scale, int zeroPoint) {
            this.scale = scale;
            this.zeroPoint = zeroPoint;
        }

        public float getScale() {
            return scale;
        }

        public int getZeroPoint() {
            return zeroPoint;
        }
    }
}
