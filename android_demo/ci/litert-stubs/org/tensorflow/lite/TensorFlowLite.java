package org.tensorflow.lite;

/** Stand-in for LiteRT's {@code TensorFlowLite}: version information of the loaded runtime. */
public final class TensorFlowLite {
    private TensorFlowLite() {}

    /** Version of the native runtime; the real library reads it from its native code. */
    public static String runtimeVersion() {
        throw new UnsupportedOperationException(Interpreter.STUB_MESSAGE);
    }
}
