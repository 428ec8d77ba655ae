package dev.mobileprune.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.nio.ByteBuffer;
import org.junit.Test;

public class QuantizationTest {
    private static final float SCALE = 0.5f;

    @Test
    public void roundsHalfAwayFromZeroAndAddsTheZeroPoint() {
        assertEquals(2 + 3, Quantization.quantize(0.75f, SCALE, 3, DType.INT8));   // 1.5 -> 2
        assertEquals(-2 + 3, Quantization.quantize(-0.75f, SCALE, 3, DType.INT8)); // -1.5 -> -2
        assertEquals(1 + 3, Quantization.quantize(0.7f, SCALE, 3, DType.INT8));    // 1.4 -> 1
        // Ties go away from zero, not to even (2.5 -> 3, 0.5 -> 1).
        assertEquals(3 + 3, Quantization.quantize(1.25f, SCALE, 3, DType.INT8));
        assertEquals(-3 + 3, Quantization.quantize(-1.25f, SCALE, 3, DType.INT8));
        assertEquals(1 + 3, Quantization.quantize(0.25f, SCALE, 3, DType.INT8));
        assertEquals(3, Quantization.quantize(0f, SCALE, 3, DType.INT8));
    }

    @Test
    public void doesNotRoundUpJustBelowOneHalf() {
        // 0.49999997f + 0.5f rounds to 1.0f in float arithmetic; the result must still be 0.
        assertEquals(0, Quantization.quantize(0.49999997f, 1f, 0, DType.INT8));
    }

    @Test
    public void clampsToTheTypeRange() {
        assertEquals(127, Quantization.quantize(1000f, SCALE, 0, DType.INT8));
        assertEquals(-128, Quantization.quantize(-1000f, SCALE, 0, DType.INT8));
        assertEquals(255, Quantization.quantize(1000f, SCALE, 0, DType.UINT8));
        assertEquals(0, Quantization.quantize(-1000f, SCALE, 10, DType.UINT8));
        assertEquals(127, Quantization.quantize(3e38f, 1e-3f, 3, DType.INT8));
        assertEquals(-128, Quantization.quantize(Float.NEGATIVE_INFINITY, SCALE, 3, DType.INT8));
    }

    @Test
    public void dequantizeInvertsQuantizeOnTheGrid() {
        for (int q = -128; q <= 127; q++) {
            float real = Quantization.dequantize(q, 1f / 255f, -128);
            assertEquals(q, Quantization.quantize(real, 1f / 255f, -128, DType.INT8));
        }
    }

    @Test(expected = IllegalArgumentException.class)
    public void quantizingToFloatIsABug() {
        Quantization.quantize(1f, 1f, 0, DType.FLOAT32);
    }

    @Test
    public void codecRoundTripsFloat32Exactly() {
        TensorSpec spec = new TensorSpec(new int[] {1, 3}, DType.FLOAT32, 0f, 0);
        ByteBuffer buffer = TensorCodec.allocate(spec);
        float[] values = {-1.5f, 0f, 3.25f};
        TensorCodec.encode(values, spec, buffer);
        assertEquals(0, buffer.position());
        assertArrayEquals(values, TensorCodec.decode(buffer, spec), 0f);
    }

    @Test
    public void codecWritesInt8AndUint8Bytes() {
        TensorSpec int8 = new TensorSpec(new int[] {1, 3}, DType.INT8, SCALE, -1);
        ByteBuffer buffer = TensorCodec.allocate(int8);
        TensorCodec.encode(new float[] {-1f, 0f, 100f}, int8, buffer);
        assertArrayEquals(new byte[] {-3, -1, 127}, bytes(buffer));
        assertArrayEquals(new float[] {-1f, 0f, 64f}, TensorCodec.decode(buffer, int8), 0f);

        TensorSpec uint8 = new TensorSpec(new int[] {1, 2}, DType.UINT8, SCALE, 10);
        ByteBuffer unsigned = TensorCodec.allocate(uint8);
        TensorCodec.encode(new float[] {0f, 100f}, uint8, unsigned);
        assertArrayEquals(new byte[] {10, (byte) 210}, bytes(unsigned));
        assertArrayEquals(new float[] {0f, 100f}, TensorCodec.decode(unsigned, uint8), 0f);
    }

    @Test
    public void codecRejectsWrongSizes() {
        TensorSpec spec = new TensorSpec(new int[] {1, 3}, DType.FLOAT32, 0f, 0);
        try {
            TensorCodec.encode(new float[2], spec, TensorCodec.allocate(spec));
            throw new AssertionError("accepted 2 values for 3 elements");
        } catch (IllegalArgumentException expected) {
            assertEquals("sample has 2 values but the model input float32[1, 3] needs 3",
                    expected.getMessage());
        }
        try {
            TensorCodec.decode(ByteBuffer.allocateDirect(8), spec);
            throw new AssertionError("accepted an 8-byte buffer for 12 bytes");
        } catch (IllegalArgumentException expected) {
            assertEquals(true, expected.getMessage().contains("needs 12"));
        }
    }

    @Test
    public void argmaxTakesTheFirstOfEqualMaxima() {
        assertEquals(1, TensorCodec.argmax(new float[] {0f, 2f, 2f, -1f}));
        assertEquals(0, TensorCodec.argmax(new float[] {-3f}));
    }

    private static byte[] bytes(ByteBuffer buffer) {
        byte[] out = new byte[buffer.capacity()];
        for (int i = 0; i < out.length; i++) {
            out[i] = buffer.get(i);
        }
        return out;
    }
}
