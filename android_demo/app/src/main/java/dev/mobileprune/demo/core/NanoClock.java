package dev.mobileprune.demo.core;

/**
 * A monotonic nanosecond clock; {@link #SYSTEM} is {@code System.nanoTime}, tests pass fakes.
 *
 * <pre>{@code
 * long start = NanoClock.SYSTEM.nanoTime();
 * }</pre>
 */
public interface NanoClock {
    long nanoTime();

    NanoClock SYSTEM = new NanoClock() {
        @Override
        public long nanoTime() {
            return System.nanoTime();
        }
    };
}
