package dev.mobileprune.demo.core;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * The labelled images every model is run on ({@code samples.bin}, written by mobileprune).
 *
 * <p>Format, little-endian: magic "MPSM", uint32 version (1), uint32 count N, uint32 rank R,
 * R x uint32 dims of one sample, N x prod(dims) float32 values, N x int32 labels.
 *
 * <pre>{@code
 * SampleSet samples = SampleSet.read(getAssets().open("samples.bin"));
 * float[] first = samples.sample(0);
 * }</pre>
 */
public final class SampleSet {
    private static final int MAGIC = 0x4d53504d; // "MPSM" read as a little-endian int
    private static final int VERSION = 1;
    private static final int MAX_RANK = 8;

    private final int[] dims;
    private final float[][] samples;
    private final int[] labels;

    private SampleSet(int[] dims, float[][] samples, int[] labels) {
        this.dims = dims;
        this.samples = samples;
        this.labels = labels;
    }

    /** Reads and checks a whole sample file; the stream is read to its end but not closed. */
    public static SampleSet read(InputStream stream) throws IOException {
        return parse(readAll(stream));
    }

    /** Parses the bytes of a sample file; throws IllegalArgumentException if they are malformed. */
    public static SampleSet parse(byte[] bytes) {
        ByteBuffer buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        if (bytes.length < 16 || buffer.getInt(0) != MAGIC) {
            throw new IllegalArgumentException("not a mobileprune sample file (magic MPSM missing); "
                    + "write it with mobileprune --android-assets");
        }
        buffer.position(4);
        int version = buffer.getInt();
        int count = buffer.getInt();
        int rank = buffer.getInt();
        if (version != VERSION) {
            throw new IllegalArgumentException("sample file version " + version
                    + " is not supported (expected " + VERSION + "); update the app or mobileprune");
        }
        if (count < 0 || rank < 1 || rank > MAX_RANK || bytes.length < 16 + 4L * rank) {
            throw new IllegalArgumentException("sample file header is corrupt (count " + count
                    + ", rank " + rank + ")");
        }
        int[] dims = new int[rank];
        long perSample = 1;
        for (int i = 0; i < rank; i++) {
            dims[i] = buffer.getInt();
            if (dims[i] <= 0) {
                throw new IllegalArgumentException("sample file has a non-positive dimension");
            }
            perSample *= dims[i];
        }
        long expected = 16 + 4L * rank + 4L * count * perSample + 4L * count;
        if (bytes.length != expected) {
            throw new IllegalArgumentException("sample file is " + bytes.length
                    + " bytes but its header implies " + expected + "; it is truncated or corrupt");
        }
        float[][] samples = new float[count][(int) perSample];
        for (float[] sample : samples) {
            buffer.asFloatBuffer().get(sample);
            buffer.position(buffer.position() + 4 * sample.length);
        }
        int[] labels = new int[count];
        buffer.asIntBuffer().get(labels);
        return new SampleSet(dims, samples, labels);
    }

    /** Number of samples. */
    public int count() {
        return labels.length;
    }

    /** Shape of one sample (no batch dimension). */
    public int[] dims() {
        return dims.clone();
    }

    /** The real values of sample {@code index}, C order. */
    public float[] sample(int index) {
        return samples[index];
    }

    /** The class id of sample {@code index}. */
    public int label(int index) {
        return labels[index];
    }

    /** Throws unless one sample is exactly what {@code input} takes with batch size 1. */
    public void checkFits(TensorSpec input, String modelName) {
        int[] shape = input.shape();
        int[] expected = new int[dims.length + 1];
        expected[0] = 1;
        System.arraycopy(dims, 0, expected, 1, dims.length);
        if (!Arrays.equals(shape, expected)) {
            throw new IllegalArgumentException("model \"" + modelName + "\" takes "
                    + Arrays.toString(shape) + " but the samples are " + Arrays.toString(dims)
                    + " each (batch 1 expected); export the samples for this model");
        }
    }

    private static byte[] readAll(InputStream stream) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] chunk = new byte[64 * 1024];
        int read;
        while ((read = stream.read(chunk)) != -1) {
            out.write(chunk, 0, read);
        }
        return out.toByteArray();
    }
}
