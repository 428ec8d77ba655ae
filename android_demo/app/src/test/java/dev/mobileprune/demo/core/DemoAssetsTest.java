package dev.mobileprune.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayInputStream;
import java.io.FileNotFoundException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.Test;

public class DemoAssetsTest {
    /** An in-memory asset folder. */
    private static final class MapSource implements AssetSource {
        final Map<String, byte[]> files = new LinkedHashMap<String, byte[]>();

        MapSource put(String name, String text) {
            files.put(name, text.getBytes(StandardCharsets.UTF_8));
            return this;
        }

        @Override
        public String[] list() {
            return files.keySet().toArray(new String[0]);
        }

        @Override
        public InputStream open(String name) throws FileNotFoundException {
            byte[] bytes = files.get(name);
            if (bytes == null) {
                throw new FileNotFoundException(name);
            }
            return new ByteArrayInputStream(bytes);
        }
    }

    private static MapSource withSamples(int[] dims) {
        MapSource source = new MapSource();
        int perSample = 1;
        for (int dim : dims) {
            perSample *= dim;
        }
        source.files.put("samples.bin", Fixtures.sampleFile(dims, new float[2][perSample], new int[] {0, 2}));
        return source;
    }

    @Test
    public void loadsManifestsInOrderAndSkipsOtherJson() throws Exception {
        MapSource source = withSamples(new int[] {2, 2, 1})
                .put("z_dense.json", Fixtures.floatManifest("dense", true, 0))
                .put("a_pruned.json", Fixtures.floatManifest("pruned", false, 1))
                .put("settings.json", "{\"theme\": \"dark\"}")
                .put("broken.json", "{not json")
                .put("readme.txt", "hello");
        DemoAssets assets = DemoAssets.load(source);
        assertEquals(2, assets.models.size());
        assertEquals("dense", assets.models.get(0).name);
        assertEquals("pruned", assets.models.get(1).name);
        assertEquals(2, assets.samples.count());
        assertEquals(2, assets.samples.label(1));
    }

    @Test
    public void namesTheBadManifestFile() throws Exception {
        MapSource source = withSamples(new int[] {2, 2, 1}).put("bad.json",
                Fixtures.floatManifest("bad", true, 0).replace("\"order\": 0", "\"order\": \"first\""));
        try {
            DemoAssets.load(source);
            fail("loaded a manifest with a string order");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage(), expected.getMessage().startsWith("bad.json: manifest field \"order\""));
        }
    }

    @Test
    public void refusesSamplesOfAnotherShape() throws Exception {
        MapSource source = withSamples(new int[] {4}).put("m.json", Fixtures.floatManifest("m", true, 0));
        try {
            DemoAssets.load(source);
            fail("loaded samples that do not fit the model");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage(), expected.getMessage().contains("model \"m\" takes [1, 2, 2, 1]"));
        }
    }

    @Test
    public void emptyAssetsSayHowToFillThem() throws Exception {
        try {
            DemoAssets.load(new MapSource());
            fail("loaded empty assets");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage(), expected.getMessage().contains("--android-assets"));
        }
    }
}
