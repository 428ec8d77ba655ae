package dev.mobileprune.demo.core;

import java.io.File;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.util.Arrays;

/**
 * Drift check against the Python exporter (run by tests/android/test_java_side.py).
 *
 * <p>Loads an assets folder with the app's own code and prints what it understood as
 * {@code key=value} lines; Python compares them with its own values. Given a replay folder with
 * {@code <stem>.replay} files (per sample: the input bytes Python fed the interpreter, then the
 * output bytes it got), it also runs the app's evaluator against those recorded outputs and
 * reports how many inputs it encoded differently and how many predictions it got right.
 *
 * <pre>{@code
 * java -cp classes:junit4.jar dev.mobileprune.demo.core.AssetCheck ASSETS_DIR [REPLAY_DIR]
 * }</pre>
 */
public final class AssetCheck {
    private AssetCheck() {}

    public static void main(String[] args) throws IOException {
        if (args.length < 1 || args.length > 2) {
            System.err.println("usage: AssetCheck ASSETS_DIR [REPLAY_DIR]");
            System.exit(2);
        }
        DemoAssets assets = DemoAssets.load(new DirectorySource(new File(args[0])));
        File replays = args.length == 2 ? new File(args[1]) : null;
        PrintStream out = System.out;
        SampleSet samples = assets.samples;
        int[] labels = new int[samples.count()];
        for (int i = 0; i < labels.length; i++) {
            labels[i] = samples.label(i);
        }
        out.println("samples.count=" + samples.count());
        out.println("samples.dims=" + join(samples.dims()));
        out.println("samples.labels=" + join(labels));
        out.println("samples.first=" + join(samples.sample(0)));
        out.println("samples.last=" + join(samples.sample(samples.count() - 1)));
        out.println("models=" + assets.models.size());
        for (int i = 0; i < assets.models.size(); i++) {
            ModelManifest model = assets.models.get(i);
            String key = "model." + i + ".";
            out.println(key + "name=" + model.name);
            out.println(key + "description=" + model.description);
            out.println(key + "baseline=" + model.baseline);
            out.println(key + "file=" + model.file);
            out.println(key + "file_bytes=" + model.fileBytes);
            printTensor(out, key + "input.", model.input);
            printTensor(out, key + "output.", model.output);
            out.println(key + "labels=" + String.join(",", model.labels));
            File replay = replays == null ? null
                    : new File(replays, model.file.replaceAll("\\.tflite$", "") + ".replay");
            if (replay != null && replay.isFile()) {
                printReplay(out, key, model, samples, Files.readAllBytes(replay.toPath()));
            }
        }
    }

    private static void printReplay(PrintStream out, String key, ModelManifest model,
                                    SampleSet samples, byte[] recorded) {
        ReplayRunner runner = new ReplayRunner(recorded, model.input.byteSize(), model.output.byteSize());
        ByteBuffer[] inputs = ModelEvaluator.encodeAll(samples, model.input);
        int correct = ModelEvaluator.countCorrect(runner, inputs, model.output, samples);
        out.println(key + "replay.runs=" + runner.runs);
        out.println(key + "replay.input_mismatches=" + runner.inputMismatches);
        out.println(key + "replay.correct=" + correct);
    }

    private static void printTensor(PrintStream out, String key, TensorSpec spec) {
        out.println(key + "shape=" + join(spec.shape()));
        out.println(key + "dtype=" + spec.dtype.jsonName);
        out.println(key + "scale=" + spec.scale);
        out.println(key + "zero_point=" + spec.zeroPoint);
    }

    private static String join(int[] values) {
        StringBuilder text = new StringBuilder();
        for (int value : values) {
            text.append(text.length() == 0 ? "" : ",").append(value);
        }
        return text.toString();
    }

    private static String join(float[] values) {
        StringBuilder text = new StringBuilder();
        for (float value : values) {
            text.append(text.length() == 0 ? "" : ",").append(Float.toString(value));
        }
        return text.toString();
    }

    /** Plays back recorded interpreter outputs and counts inputs that differ from the recording. */
    private static final class ReplayRunner implements ModelRunner {
        private final byte[] recorded;
        private final int inputBytes;
        private final int outputBytes;
        int runs;
        int inputMismatches;

        ReplayRunner(byte[] recorded, int inputBytes, int outputBytes) {
            this.recorded = recorded;
            this.inputBytes = inputBytes;
            this.outputBytes = outputBytes;
        }

        @Override
        public void run(ByteBuffer input, ByteBuffer output) {
            int offset = runs * (inputBytes + outputBytes);
            if (offset + inputBytes + outputBytes > recorded.length) {
                throw new IllegalStateException("replay file has fewer runs than samples");
            }
            byte[] actual = new byte[inputBytes];
            input.duplicate().get(actual);
            if (!Arrays.equals(actual, Arrays.copyOfRange(recorded, offset, offset + inputBytes))) {
                inputMismatches++;
            }
            output.put(recorded, offset + inputBytes, outputBytes);
            runs++;
        }
    }
}
