package dev.mobileprune.demo.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** Builders shared by the tests: manifests and sample files in the exporter's formats. */
final class Fixtures {
    private Fixtures() {}

    static String manifestJson(String name, boolean baseline, int order, String dtype,
                               double inScale, int inZero, String labels) {
        return "{\"format\": \"mobileprune.android/1\", \"name\": \"" + name + "\","
                + " \"description\": \"test model\", \"baseline\": " + baseline + ","
                + " \"order\": " + order + ", \"file\": \"" + name + ".tflite\","
                + " \"file_bytes\": 1234, \"samples\": \"samples.bin\","
                + " \"input\": {\"shape\": [1, 2, 2, 1], \"dtype\": \"" + dtype + "\","
                + " \"scale\": " + inScale + ", \"zero_point\": " + inZero + "},"
                + " \"output\": {\"shape\": [1, 3], \"dtype\": \"" + dtype + "\","
                + " \"scale\": " + inScale + ", \"zero_point\": " + inZero + "},"
                + " \"labels\": " + labels + "}";
    }

    static String floatManifest(String name, boolean baseline, int order) {
        return manifestJson(name, baseline, order, "float32", 0.0, 0, "[\"a\", \"b\", \"c\"]");
    }

    /** A sample file with the given dims, values and labels, laid out as mobileprune writes it. */
    static byte[] sampleFile(int[] dims, float[][] values, int[] labels) {
        int perSample = values.length == 0 ? 0 : values[0].length;
        ByteBuffer out = ByteBuffer.allocate(16 + 4 * dims.length + 4 * values.length * perSample
                + 4 * labels.length).order(ByteOrder.LITTLE_ENDIAN);
        out.put(new byte[] {'M', 'P', 'S', 'M'}).putInt(1).putInt(labels.length).putInt(dims.length);
        for (int dim : dims) {
            out.putInt(dim);
        }
        for (float[] sample : values) {
            for (float value : sample) {
                out.putFloat(value);
            }
        }
        for (int label : labels) {
            out.putInt(label);
        }
        return out.array();
    }
}
