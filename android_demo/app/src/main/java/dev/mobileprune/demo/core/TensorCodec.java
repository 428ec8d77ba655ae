package dev.mobileprune.demo.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Moves real values in and out of the byte buffers the interpreter reads and writes.
 *
 * <p>Buffers are direct and in native byte order, which lets LiteRT use them without a copy.
 *
 * <pre>{@code
 * ByteBuffer input = TensorCodec.allocate(manifest.input);
 * TensorCodec.encode(sample, manifest.input, input);
 * interpreter.run(input, output);
 * int predicted = TensorCodec.argmax(TensorCodec.decode(output, manifest.output));
 * }</pre>
 */
public final class TensorCodec {
    private TensorCodec() {}

    /** A zeroed, direct, native-order buffer sized for the tensor. */
    public static ByteBuffer allocate(TensorSpec spec) {
        return ByteBuffer.allocateDirect(spec.byteSize()).order(ByteOrder.nativeOrder());
    }

    /** Writes {@code values} (real values) into {@code out} from position 0, quantizing if needed. */
    public static void encode(float[] values, TensorSpec spec, ByteBuffer out) {
        if (values.length != spec.elementCount()) {
            throw new IllegalArgumentException("sample has " + values.length
                    + " values but the model input " + spec + " needs " + spec.elementCount());
        }
        checkCapacity(out, spec);
        out.clear();
        for (float value : values) {
            if (spec.dtype == DType.FLOAT32) {
                out.putFloat(value);
            } else {
                out.put((byte) Quantization.quantize(value, spec.scale, spec.zeroPoint, spec.dtype));
            }
        }
        out.rewind();
    }

    /** Reads the tensor in {@code in} (from position 0) as real values, dequantizing if needed. */
    public static float[] decode(ByteBuffer in, TensorSpec spec) {
        checkCapacity(in, spec);
        float[] values = new float[spec.elementCount()];
        for (int i = 0; i < values.length; i++) {
            values[i] = readReal(in, spec, i);
        }
        return values;
    }

    /** Index of the largest value, the first one on ties. */
    public static int argmax(float[] values) {
        if (values.length == 0) {
            throw new IllegalArgumentException("argmax of an empty output");
        }
        int best = 0;
        for (int i = 1; i < values.length; i++) {
            if (values[i] > values[best]) {
                best = i;
            }
        }
        return best;
    }

    private static float readReal(ByteBuffer in, TensorSpec spec, int index) {
        switch (spec.dtype) {
            case FLOAT32:
                return in.getFloat(index * 4);
            case INT8:
                return Quantization.dequantize(in.get(index), spec.scale, spec.zeroPoint);
            case UINT8:
                return Quantization.dequantize(in.get(index) & 0xff, spec.scale, spec.zeroPoint);
            default:
                throw new IllegalStateException("unhandled dtype " + spec.dtype);
        }
    }

    private static void checkCapacity(ByteBuffer buffer, TensorSpec spec) {
        if (buffer.capacity() != spec.byteSize()) {
            throw new IllegalArgumentException("buffer holds " + buffer.capacity()
                    + " bytes but " + spec + " needs " + spec.byteSize()
                    + "; allocate it with TensorCodec.allocate");
        }
    }
}
