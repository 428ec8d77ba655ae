package dev.mobileprune.demo.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Turns measured results into the text cells of the app's table (and of its Logcat dump).
 *
 * <p>Speedup is against the baseline manifest's median latency; a model without the baseline
 * in the same run shows "-".
 *
 * <pre>{@code
 * for (String[] row : ResultTable.rows(results)) { ... one TableRow per array ... }
 * }</pre>
 */
public final class ResultTable {
    /** Column titles, in cell order. */
    public static final String[] HEADER = {"Model", "Acc.", "Init ms", "p50 ms", "p90 ms", "Speedup"};

    private ResultTable() {}

    /** One row of cells per result, in the given order, header not included. */
    public static List<String[]> rows(List<ModelResult> results) {
        ModelResult baseline = null;
        for (ModelResult result : results) {
            if (result.manifest.baseline) {
                baseline = result;
            }
        }
        List<String[]> rows = new ArrayList<String[]>();
        for (ModelResult result : results) {
            rows.add(new String[] {
                result.manifest.name,
                format("%.1f%%", 100 * result.accuracy()),
                format("%.1f", result.initMs),
                format("%.3f", result.latency.medianMs),
                format("%.3f", result.latency.p90Ms),
                baseline == null ? "-" : format("%.2fx", result.speedupOver(baseline)),
            });
        }
        return rows;
    }

    /** The table as aligned plain text, header first; for Logcat and copy-paste. */
    public static String toText(List<ModelResult> results) {
        List<String[]> lines = new ArrayList<String[]>();
        lines.add(HEADER);
        lines.addAll(rows(results));
        int[] widths = new int[HEADER.length];
        for (String[] line : lines) {
            for (int i = 0; i < line.length; i++) {
                widths[i] = Math.max(widths[i], line[i].length());
            }
        }
        StringBuilder text = new StringBuilder();
        for (String[] line : lines) {
            for (int i = 0; i < line.length; i++) {
                String cell = line[i];
                // The name column is left-aligned, numbers right-aligned.
                text.append(i == 0 ? pad(cell, widths[i], false) : "  " + pad(cell, widths[i], true));
            }
            text.append('\n');
        }
        return text.toString();
    }

    private static String pad(String cell, int width, boolean right) {
        StringBuilder spaces = new StringBuilder();
        for (int i = cell.length(); i < width; i++) {
            spaces.append(' ');
        }
        return right ? spaces + cell : cell + spaces;
    }

    private static String format(String pattern, double value) {
        // Locale.US: a decimal point whatever the phone's language, so logs parse the same.
        return String.format(Locale.US, pattern, value);
    }
}
