package dev.mobileprune.demo.core;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * Everything the app needs from its assets: the manifests in table order and the shared samples.
 *
 * <p>JSON files that are not mobileprune manifests are skipped, so other assets can sit beside.
 *
 * <pre>{@code
 * DemoAssets assets = DemoAssets.load(source);
 * for (ModelManifest model : assets.models) { ... assets.samples ... }
 * }</pre>
 */
public final class DemoAssets {
    public final List<ModelManifest> models;
    public final SampleSet samples;

    private DemoAssets(List<ModelManifest> models, SampleSet samples) {
        this.models = models;
        this.samples = samples;
    }

    /** Reads every manifest and the sample file, and checks they fit each other. */
    public static DemoAssets load(AssetSource source) throws IOException {
        String[] names = source.list();
        Arrays.sort(names);
        List<ModelManifest> manifests = new ArrayList<ModelManifest>();
        for (String name : names) {
            if (!name.endsWith(".json")) {
                continue;
            }
            String text = readText(source, name);
            if (!isManifest(text)) {
                continue;
            }
            try {
                manifests.add(ModelManifest.parse(text));
            } catch (IllegalArgumentException error) {
                throw new IllegalArgumentException(name + ": " + error.getMessage(), error);
            }
        }
        List<ModelManifest> ordered = Manifests.ordered(manifests);
        SampleSet samples;
        try (InputStream stream = source.open(ordered.get(0).samples)) {
            samples = SampleSet.read(stream);
        }
        for (ModelManifest model : ordered) {
            samples.checkFits(model.input, model.name);
        }
        return new DemoAssets(ordered, samples);
    }

    private static boolean isManifest(String text) {
        try {
            Map<String, Object> root = Json.parseObject(text);
            return ModelManifest.FORMAT.equals(root.get("format"));
        } catch (IllegalArgumentException notJson) {
            return false;
        }
    }

    private static String readText(AssetSource source, String name) throws IOException {
        try (InputStream stream = source.open(name)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] chunk = new byte[8192];
            int read;
            while ((read = stream.read(chunk)) != -1) {
                out.write(chunk, 0, read);
            }
            return new String(out.toByteArray(), "UTF-8");
        }
    }
}
