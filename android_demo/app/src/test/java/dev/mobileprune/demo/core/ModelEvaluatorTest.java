package dev.mobileprune.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.nio.ByteBuffer;
import org.junit.Test;

public class ModelEvaluatorTest {
    /** A fake model whose logits are the input's first three values: class = argmax of those. */
    private static final ModelRunner FIRST_THREE = new ModelRunner() {
        @Override
        public void run(ByteBuffer input, ByteBuffer output) {
            for (int i = 0; i < 3; i++) {
                output.putFloat(i * 4, input.getFloat(i * 4));
            }
        }
    };

    @Test
    public void countsTopOnePredictionsThatMatchTheLabels() {
        float[][] values = {{0f, 1f, 0f, 0f}, {5f, 1f, 0f, 0f}, {0f, 0f, 9f, 0f}};
        int[] labels = {1, 2, 2}; // second sample predicts 0: wrong
        SampleSet samples = SampleSet.parse(Fixtures.sampleFile(new int[] {2, 2, 1}, values, labels));
        ModelManifest manifest = ModelManifest.parse(Fixtures.floatManifest("m", true, 0));
        ByteBuffer[] inputs = ModelEvaluator.encodeAll(samples, manifest.input);
        assertEquals(2, ModelEvaluator.countCorrect(FIRST_THREE, inputs, manifest.output, samples));
        // Running again gives the same count: buffers are rewound, not consumed.
        assertEquals(2, ModelEvaluator.countCorrect(FIRST_THREE, inputs, manifest.output, samples));
    }

    @Test
    public void quantizesInputsOnceForInt8Models() {
        float[][] values = {{0f, 0.5f, 1f, 0.25f}};
        SampleSet samples = SampleSet.parse(Fixtures.sampleFile(new int[] {2, 2, 1}, values, new int[] {0}));
        TensorSpec input = new TensorSpec(new int[] {1, 2, 2, 1}, DType.INT8, 1f / 255f, -128);
        ByteBuffer[] inputs = ModelEvaluator.encodeAll(samples, input);
        byte[] quantized = new byte[4];
        inputs[0].get(quantized);
        // The float32 scale 1f/255f is a hair above 1/255, so 0.5 / scale is 127.49999f: it rounds
        // to 127 (q = -1), as it does in the interpreter; 0.25 / scale = 63.75 -> 64 (q = -64).
        assertArrayEquals(new byte[] {-128, -1, 127, -64}, quantized);
    }
}
