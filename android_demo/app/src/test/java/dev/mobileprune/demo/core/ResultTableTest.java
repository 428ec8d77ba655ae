package dev.mobileprune.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.util.Arrays;
import java.util.List;
import org.junit.Test;

public class ResultTableTest {
    private static ModelResult result(String name, boolean baseline, int correct, long medianNanos) {
        ModelManifest manifest = ModelManifest.parse(Fixtures.floatManifest(name, baseline, 0));
        return new ModelResult(manifest, correct, 8, 12.345,
                LatencyStats.fromNanos(new long[] {medianNanos, medianNanos, 2 * medianNanos}));
    }

    @Test
    public void formatsCellsAndSpeedupAgainstTheBaseline() {
        List<String[]> rows = ResultTable.rows(Arrays.asList(
                result("dense", true, 7, 2_000_000), result("shrunk", false, 8, 500_000)));
        assertArrayEquals(new String[] {"dense", "87.5%", "12.3", "2.000", "3.600", "1.00x"}, rows.get(0));
        assertArrayEquals(new String[] {"shrunk", "100.0%", "12.3", "0.500", "0.900", "4.00x"}, rows.get(1));
    }

    @Test
    public void showsADashWithoutABaseline() {
        List<String[]> rows = ResultTable.rows(Arrays.asList(result("alone", false, 4, 1_000_000)));
        assertEquals("-", rows.get(0)[5]);
    }

    @Test
    public void textTableAlignsColumns() {
        String text = ResultTable.toText(Arrays.asList(result("dense", true, 7, 2_000_000)));
        assertEquals(
                "Model   Acc.  Init ms  p50 ms  p90 ms  Speedup\n"
                        + "dense  87.5%     12.3   2.000   3.600    1.00x\n",
                text);
    }
}
