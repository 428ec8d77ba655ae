package dev.mobileprune.demo.core;

import java.nio.ByteBuffer;

/**
 * Runs a model over the sample set and counts correct top-1 predictions.
 *
 * <pre>{@code
 * ByteBuffer[] inputs = ModelEvaluator.encodeAll(samples, manifest.input);
 * int correct = ModelEvaluator.countCorrect(runner, inputs, manifest.output, samples);
 * }</pre>
 */
public final class ModelEvaluator {
    private ModelEvaluator() {}

    /** Encodes (and, for int8/uint8 models, quantizes) every sample once, ahead of timing. */
    public static ByteBuffer[] encodeAll(SampleSet samples, TensorSpec input) {
        ByteBuffer[] encoded = new ByteBuffer[samples.count()];
        for (int i = 0; i < encoded.length; i++) {
            encoded[i] = TensorCodec.allocate(input);
            TensorCodec.encode(samples.sample(i), input, encoded[i]);
        }
        return encoded;
    }

    /** Runs every encoded sample once and returns how many predictions match the labels. */
    public static int countCorrect(ModelRunner runner, ByteBuffer[] inputs, TensorSpec output,
                                   SampleSet samples) {
        if (inputs.length != samples.count()) {
            throw new IllegalArgumentException(inputs.length + " inputs for "
                    + samples.count() + " samples");
        }
        ByteBuffer result = TensorCodec.allocate(output);
        int correct = 0;
        for (int i = 0; i < inputs.length; i++) {
            inputs[i].rewind();
            result.clear();
            runner.run(inputs[i], result);
            if (TensorCodec.argmax(TensorCodec.decode(result, output)) == samples.label(i)) {
                correct++;
            }
        }
        return correct;
    }
}
