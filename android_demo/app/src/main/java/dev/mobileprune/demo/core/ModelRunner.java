package dev.mobileprune.demo.core;

import java.nio.ByteBuffer;

/**
 * One inference with batch size 1: read {@code input}, write {@code output}.
 *
 * <p>The app implements it over LiteRT's {@code Interpreter.run}; tests use fakes, which keeps
 * accuracy and latency bookkeeping testable on a plain JVM. Callers rewind both buffers first.
 *
 * <pre>{@code
 * ModelRunner runner = (input, output) -> interpreter.run(input, output);
 * }</pre>
 */
public interface ModelRunner {
    void run(ByteBuffer input, ByteBuffer output);
}
