package dev.mobileprune.demo;

import android.content.res.AssetManager;
import dev.mobileprune.demo.core.DType;
import dev.mobileprune.demo.core.LatencyBenchmark;
import dev.mobileprune.demo.core.LatencyStats;
import dev.mobileprune.demo.core.ModelEvaluator;
import dev.mobileprune.demo.core.ModelManifest;
import dev.mobileprune.demo.core.ModelResult;
import dev.mobileprune.demo.core.ModelRunner;
import dev.mobileprune.demo.core.NanoClock;
import dev.mobileprune.demo.core.SampleSet;
import dev.mobileprune.demo.core.TensorCodec;
import dev.mobileprune.demo.core.TensorSpec;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;

/**
 * Measures one model with LiteRT's Interpreter: init time, accuracy on the samples, latency.
 *
 * <pre>{@code
 * ModelResult result = ModelBench.measure(getAssets(), manifest, samples, 4);
 * }</pre>
 */
final class ModelBench {
    static final int WARMUP_RUNS = 20;
    static final int TIMED_RUNS = 200;

    private ModelBench() {}

    static ModelResult measure(AssetManager assets, ModelManifest manifest, SampleSet samples,
                               int threads) throws IOException {
        ByteBuffer model = readDirect(assets, manifest.file);
        Interpreter.Options options = new Interpreter.Options().setNumThreads(threads);
        // Init time: interpreter creation and tensor allocation; the file is already in memory.
        long start = System.nanoTime();
        try (Interpreter interpreter = new Interpreter(model, options)) {
            interpreter.allocateTensors();
            double initMs = (System.nanoTime() - start) / 1e6;
            checkMatches(manifest, "input", manifest.input, interpreter.getInputTensor(0));
            checkMatches(manifest, "output", manifest.output, interpreter.getOutputTensor(0));

            ModelRunner runner = new ModelRunner() {
                @Override
                public void run(ByteBuffer input, ByteBuffer output) {
                    interpreter.run(input, output);
                }
            };
            ByteBuffer[] inputs = ModelEvaluator.encodeAll(samples, manifest.input);
            int correct = ModelEvaluator.countCorrect(runner, inputs, manifest.output, samples);
            LatencyStats latency = LatencyBenchmark.measure(runner, inputs,
                    TensorCodec.allocate(manifest.output), WARMUP_RUNS, TIMED_RUNS, NanoClock.SYSTEM);
            return new ModelResult(manifest, correct, samples.count(), initMs, latency);
        }
    }

    /** The manifest must describe the file it ships with; a mismatch means stale assets. */
    private static void checkMatches(ModelManifest manifest, String side, TensorSpec spec,
                                     Tensor tensor) {
        DType actualType = fromLiteRt(tensor.dataType());
        boolean sameQuantization = !spec.dtype.isQuantized()
                || (tensor.quantizationParams().getScale() == spec.scale
                        && tensor.quantizationParams().getZeroPoint() == spec.zeroPoint);
        if (!Arrays.equals(tensor.shape(), spec.shape()) || actualType != spec.dtype
                || !sameQuantization) {
            throw new IllegalStateException(manifest.file + ": the model's " + side + " is "
                    + tensor.dataType() + Arrays.toString(tensor.shape()) + " but its manifest says "
                    + spec + "; re-run mobileprune with --android-assets");
        }
    }

    private static DType fromLiteRt(DataType type) {
        switch (type) {
            case FLOAT32:
                return DType.FLOAT32;
            case INT8:
                return DType.INT8;
            case UINT8:
                return DType.UINT8;
            default:
                return null;
        }
    }

    /** Reads an asset into a direct, native-order buffer, which the Interpreter requires. */
    private static ByteBuffer readDirect(AssetManager assets, String name) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (InputStream stream = assets.open(name)) {
            byte[] chunk = new byte[64 * 1024];
            int read;
            while ((read = stream.read(chunk)) != -1) {
                bytes.write(chunk, 0, read);
            }
        }
        ByteBuffer buffer = ByteBuffer.allocateDirect(bytes.size()).order(ByteOrder.nativeOrder());
        buffer.put(bytes.toByteArray());
        buffer.rewind();
        return buffer;
    }
}
