package dev.mobileprune.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.List;
import org.junit.Test;

public class ModelManifestTest {
    @Test
    public void readsEveryFieldOfAQuantizedManifest() {
        ModelManifest manifest = ModelManifest.parse(Fixtures.manifestJson(
                "pruned_int8", false, 2, "int8", 0.003921568859368563, -128, "[\"a\", \"b\", \"c\"]"));
        assertEquals("pruned_int8", manifest.name);
        assertEquals("test model", manifest.description);
        assertFalse(manifest.baseline);
        assertEquals(2, manifest.order);
        assertEquals("pruned_int8.tflite", manifest.file);
        assertEquals(1234L, manifest.fileBytes);
        assertEquals("samples.bin", manifest.samples);
        assertArrayEquals(new int[] {1, 2, 2, 1}, manifest.input.shape());
        assertSame(DType.INT8, manifest.input.dtype);
        assertEquals(1f / 255f, manifest.input.scale, 0f);
        assertEquals(-128, manifest.input.zeroPoint);
        assertArrayEquals(new int[] {1, 3}, manifest.output.shape());
        assertEquals(Arrays.asList("a", "b", "c"), manifest.labels);
    }

    @Test
    public void namesTheFieldThatIsWrong() {
        String good = Fixtures.floatManifest("m", true, 0);
        assertRejected(good.replace("mobileprune.android/1", "other/2"), "not a mobileprune manifest");
        assertRejected(good.replace("\"order\": 0", "\"order\": 0.5"), "\"order\" must be a whole number");
        assertRejected(good.replace("\"baseline\": true", "\"baseline\": \"yes\""), "\"baseline\" must be true or false");
        assertRejected(good.replace("\"dtype\": \"float32\"", "\"dtype\": \"int16\""), "unsupported dtype \"int16\"");
        assertRejected(good.replace("[1, 2, 2, 1]", "[1, -1, 2, 1]"), "non-positive dimension");
        assertRejected(good.replace("[\"a\", \"b\", \"c\"]", "[\"a\", \"b\"]"), "2 labels for 3 output classes");
        assertRejected(good.replace("\"file\": \"m.tflite\", ", ""), "field \"file\" must be a string, got nothing");
    }

    @Test
    public void quantizedTensorsNeedAScaleAndAZeroPointInRange() {
        assertRejected(Fixtures.manifestJson("m", true, 0, "int8", 0.0, 0, "[\"a\", \"b\", \"c\"]"),
                "needs a positive scale");
        assertRejected(Fixtures.manifestJson("m", true, 0, "int8", 0.1, 128, "[\"a\", \"b\", \"c\"]"),
                "outside the int8 range");
    }

    @Test
    public void ordersByOrderAndFindsTheSingleBaseline() {
        ModelManifest dense = ModelManifest.parse(Fixtures.floatManifest("dense", true, 0));
        ModelManifest pruned = ModelManifest.parse(Fixtures.floatManifest("pruned", false, 1));
        ModelManifest shrunk = ModelManifest.parse(Fixtures.floatManifest("shrunk", false, 2));
        List<ModelManifest> ordered = Manifests.ordered(Arrays.asList(shrunk, dense, pruned));
        assertEquals(Arrays.asList(dense, pruned, shrunk), ordered);
        assertSame(dense, Manifests.baseline(ordered));
    }

    @Test
    public void refusesZeroOrTwoBaselinesAndEmptyAssets() {
        ModelManifest a = ModelManifest.parse(Fixtures.floatManifest("a", true, 0));
        ModelManifest b = ModelManifest.parse(Fixtures.floatManifest("b", true, 1));
        ModelManifest c = ModelManifest.parse(Fixtures.floatManifest("c", false, 2));
        assertOrderRejected(Arrays.asList(a, b), "two baselines");
        assertOrderRejected(Arrays.asList(c), "no manifest is marked as baseline");
        assertOrderRejected(Arrays.<ModelManifest>asList(), "no model manifests found");
    }

    private static void assertRejected(String json, String expectedMessagePart) {
        try {
            ModelManifest.parse(json);
            fail("accepted a bad manifest, expected: " + expectedMessagePart);
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage(), expected.getMessage().contains(expectedMessagePart));
        }
    }

    private static void assertOrderRejected(List<ModelManifest> manifests, String expectedMessagePart) {
        try {
            Manifests.ordered(manifests);
            fail("accepted manifests, expected: " + expectedMessagePart);
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage(), expected.getMessage().contains(expectedMessagePart));
        }
    }
}
