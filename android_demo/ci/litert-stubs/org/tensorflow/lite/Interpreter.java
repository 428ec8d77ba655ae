package org.tensorflow.lite;

import java.nio.ByteBuffer;
import java.util.Map;

/**
 * Stand-in for LiteRT's {@code Interpreter}: runs a {@code .tflite} model held in a direct
 * buffer. Only the constructor and methods the demo app calls are declared.
 */
public final class Interpreter implements AutoCloseable {
    static final String STUB_MESSAGE =
            "compile-time stand-in for LiteRT; build the app with Gradle to get the real library";

    public Interpreter(ByteBuffer model, Options options) {
        throw new UnsupportedOperationException(STUB_MESSAGE);
    }

    public void allocateTensors() {
        throw new UnsupportedOperationException(STUB_MESSAGE);
    }

    public Tensor getInputTensor(int index) {
        throw new UnsupportedOperationException(STUB_MESSAGE);
    }

    public Tensor getOutputTensor(int index) {
        throw new UnsupportedOperationException(STUB_MESSAGE);
    }

    /** Runs one inference; {@code input} and {@code output} are buffers or arrays. */
    public void run(Object input, Object output) {
        throw new UnsupportedOperationException(STUB_MESSAGE);
    }

    public int getInputTensorCount() {
        throw new UnsupportedOperationException(STUB_MESSAGE);
    }

    public int getOutputTensorCount() {
        throw new UnsupportedOperationException(STUB_MESSAGE);
    }

    /** Runs one inference of a model with several inputs; outputs maps output index -> buffer. */
    public void runForMultipleInputsOutputs(Object[] inputs, Map<Integer, Object> outputs) {
        throw new UnsupportedOperationException(STUB_MESSAGE);
    }

    /** Releases native resources; like the real API, declares no checked exception. */
    @Override
    public void close() {
        throw new UnsupportedOperationException(STUB_MESSAGE);
    }

    /** Stand-in for {@code Interpreter.Options}: interpreter settings. */
    public static class Options {
        public Options setNumThreads(int numThreads) {
            throw new UnsupportedOperationException(STUB_MESSAGE);
        }
    }
}
