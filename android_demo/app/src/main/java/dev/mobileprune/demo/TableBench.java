package dev.mobileprune.demo;

import android.os.Build;
import android.os.Debug;
import dev.mobileprune.demo.core.AssetSource;
import dev.mobileprune.demo.core.NanoClock;
import dev.mobileprune.demo.core.TableManifest;
import dev.mobileprune.demo.core.TableResult;
import dev.mobileprune.demo.core.TableTimer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;
import org.tensorflow.lite.TensorFlowLite;

/**
 * The table mode: times every configuration of a latency-table manifest with LiteRT's Interpreter
 * and returns the result JSON that {@code mobileprune latency-table --from-device} imports.
 *
 * <p>Policy and file formats live in the plain-Java core ({@link TableManifest}, {@link TableTimer},
 * {@link TableResult}); this class only loads interpreters and supplies the clocks. With the
 * manifest's {@code cpu} clock (1 thread, where the Interpreter runs on the calling thread) a run
 * is timed with {@link Debug#threadCpuTimeNanos()}, else with {@link System#nanoTime()}. The Java
 * API has no bare {@code invoke()}: a timed run includes copying the inputs in and the outputs out
 * (the empty model's run pays the same, and is subtracted as the fixed cost in Python).
 *
 * <pre>{@code
 * String json = TableBench.measure(source, progress);
 * }</pre>
 */
final class TableBench {
    private TableBench() {}

    static String measure(AssetSource folder, TableTimer.Progress progress) throws IOException {
        TableManifest manifest = TableManifest.parse(new String(read(folder,
                TableManifest.FILE_NAME), "UTF-8"));
        List<Interpreter> interpreters = new ArrayList<>();
        try {
            Map<String, Runnable> invokes = new LinkedHashMap<>();
            Random random = new Random(0);
            for (TableManifest.Entry entry : manifest.models) {
                Interpreter interpreter = load(folder, entry.file, manifest.threads);
                interpreters.add(interpreter);
                Runnable invoke = invoker(interpreter, random);
                invoke.run(); // first run: lazy initialisation, delegate preparation
                invokes.put(entry.name, invoke);
            }
            NanoClock timer = manifest.clock.equals("cpu") ? new NanoClock() {
                @Override
                public long nanoTime() {
                    return Debug.threadCpuTimeNanos();
                }
            } : NanoClock.SYSTEM;
            Map<String, List<Double>> rounds = TableTimer.measure(invokes, manifest.rounds,
                    manifest.minSeconds, manifest.minRuns, timer, NanoClock.SYSTEM, progress);
            return TableResult.toJson(manifest, "android", runtime(), machine(), rounds);
        } finally {
            for (Interpreter interpreter : interpreters) {
                interpreter.close();
            }
        }
    }

    private static Interpreter load(AssetSource folder, String file, int threads)
            throws IOException {
        byte[] bytes = read(folder, file);
        ByteBuffer model = ByteBuffer.allocateDirect(bytes.length).order(ByteOrder.nativeOrder());
        model.put(bytes);
        model.rewind();
        Interpreter interpreter = new Interpreter(model, new Interpreter.Options()
                .setNumThreads(threads));
        interpreter.allocateTensors();
        return interpreter;
    }

    /** One inference on random inputs (floats in [-1, 1), random bytes for integer tensors). */
    private static Runnable invoker(final Interpreter interpreter, Random random) {
        final Object[] inputs = new Object[interpreter.getInputTensorCount()];
        for (int i = 0; i < inputs.length; i++) {
            inputs[i] = randomBuffer(interpreter.getInputTensor(i), random);
        }
        final Map<Integer, Object> outputs = new HashMap<>();
        for (int i = 0; i < interpreter.getOutputTensorCount(); i++) {
            outputs.put(i, ByteBuffer.allocateDirect(interpreter.getOutputTensor(i).numBytes())
                    .order(ByteOrder.nativeOrder()));
        }
        return new Runnable() {
            @Override
            public void run() {
                for (Object input : inputs) {
                    ((ByteBuffer) input).rewind();
                }
                for (Object output : outputs.values()) {
                    ((ByteBuffer) output).clear();
                }
                interpreter.runForMultipleInputsOutputs(inputs, outputs);
            }
        };
    }

    private static ByteBuffer randomBuffer(Tensor tensor, Random random) {
        ByteBuffer buffer = ByteBuffer.allocateDirect(tensor.numBytes()).order(ByteOrder.nativeOrder());
        if (tensor.dataType() == DataType.FLOAT32) {
            while (buffer.remaining() >= 4) {
                buffer.putFloat(2 * random.nextFloat() - 1);
            }
        } else {
            byte[] bytes = new byte[buffer.capacity()];
            random.nextBytes(bytes);
            buffer.put(bytes);
        }
        buffer.rewind();
        return buffer;
    }

    private static Map<String, String> runtime() {
        Map<String, String> runtime = new LinkedHashMap<>();
        runtime.put("name", "litert-android");
        runtime.put("version", TensorFlowLite.runtimeVersion());
        return runtime;
    }

    private static Map<String, String> machine() {
        Map<String, String> machine = new LinkedHashMap<>();
        machine.put("manufacturer", Build.MANUFACTURER);
        machine.put("model", Build.MODEL);
        machine.put("hardware", Build.HARDWARE);
        machine.put("abi", Build.SUPPORTED_ABIS.length > 0 ? Build.SUPPORTED_ABIS[0] : "");
        machine.put("android", Build.VERSION.RELEASE + " (API " + Build.VERSION.SDK_INT + ")");
        machine.put("cores", String.valueOf(Runtime.getRuntime().availableProcessors()));
        return machine;
    }

    private static byte[] read(AssetSource folder, String name) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (InputStream stream = folder.open(name)) {
            byte[] chunk = new byte[64 * 1024];
            int read;
            while ((read = stream.read(chunk)) != -1) {
                bytes.write(chunk, 0, read);
            }
        }
        return bytes.toByteArray();
    }
}
