package dev.mobileprune.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.util.Arrays;
import org.junit.Test;

public class SampleSetTest {
    private static final int[] DIMS = {2, 2, 1};
    private static final float[][] VALUES = {{0f, 0.25f, 0.5f, 1f}, {-1f, 2f, 3.5f, 1e-7f}};
    private static final int[] LABELS = {7, 2};

    @Test
    public void readsDimsValuesAndLabels() throws IOException {
        SampleSet set = SampleSet.read(new ByteArrayInputStream(Fixtures.sampleFile(DIMS, VALUES, LABELS)));
        assertEquals(2, set.count());
        assertArrayEquals(DIMS, set.dims());
        assertArrayEquals(VALUES[0], set.sample(0), 0f);
        assertArrayEquals(VALUES[1], set.sample(1), 0f);
        assertEquals(7, set.label(0));
        assertEquals(2, set.label(1));
    }

    @Test
    public void rejectsBadMagicVersionAndLength() {
        byte[] good = Fixtures.sampleFile(DIMS, VALUES, LABELS);
        byte[] badMagic = good.clone();
        badMagic[0] = 'X';
        assertRejected(badMagic, "magic MPSM missing");
        byte[] badVersion = good.clone();
        badVersion[4] = 2;
        assertRejected(badVersion, "version 2 is not supported");
        assertRejected(Arrays.copyOf(good, good.length - 1), "truncated or corrupt");
        assertRejected(Arrays.copyOf(good, good.length + 4), "truncated or corrupt");
        assertRejected(new byte[] {'M', 'P'}, "magic MPSM missing");
    }

    @Test
    public void checksTheModelInputTakesOneSample() {
        SampleSet set = SampleSet.parse(Fixtures.sampleFile(DIMS, VALUES, LABELS));
        set.checkFits(new TensorSpec(new int[] {1, 2, 2, 1}, DType.FLOAT32, 0f, 0), "ok");
        try {
            set.checkFits(new TensorSpec(new int[] {1, 4, 1}, DType.FLOAT32, 0f, 0), "flat");
            fail("accepted a model of another input shape");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage(), expected.getMessage().startsWith(
                    "model \"flat\" takes [1, 4, 1] but the samples are [2, 2, 1] each"));
        }
    }

    private static void assertRejected(byte[] bytes, String expectedMessagePart) {
        try {
            SampleSet.parse(bytes);
            fail("accepted a bad sample file, expected: " + expectedMessagePart);
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage(), expected.getMessage().contains(expectedMessagePart));
        }
    }
}
