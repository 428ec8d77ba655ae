package dev.mobileprune.demo;

import android.app.Activity;
import android.content.res.AssetManager;
import android.graphics.Typeface;
import android.os.Bundle;
import android.util.Log;
import android.view.View;
import android.widget.Button;
import android.widget.RadioGroup;
import android.widget.TableLayout;
import android.widget.TableRow;
import android.widget.TextView;
import dev.mobileprune.demo.core.AssetSource;
import dev.mobileprune.demo.core.DemoAssets;
import dev.mobileprune.demo.core.ModelManifest;
import dev.mobileprune.demo.core.ModelResult;
import dev.mobileprune.demo.core.ResultTable;
import dev.mobileprune.demo.core.TableManifest;
import dev.mobileprune.demo.core.TableResult;
import dev.mobileprune.demo.core.TableTimer;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.tensorflow.lite.TensorFlowLite;

/**
 * The demo screen: pick 1, 2 or 4 threads, press Run, read accuracy, init time, latency and
 * speedup of every model mobileprune exported into the assets.
 *
 * <p>Measuring happens on one background thread; the table is also written to Logcat (tag
 * {@code mobileprune}) so results can be collected with {@code adb logcat -s mobileprune}.
 *
 * <p>Table mode (the "Table" button, or {@code adb shell am start -n
 * dev.mobileprune.demo/.MainActivity --ez table true}) times the configurations of a latency-table
 * manifest ({@code files/table/} when pushed there, else the {@code table/} assets folder) and writes
 * {@code files/latency_result.json} for {@code mobileprune latency-table --from-device}.
 */
public class MainActivity extends Activity {
    private static final String TAG = "mobileprune";

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private RadioGroup threads;
    private Button run;
    private Button tableMode;
    private TextView status;
    private TableLayout table;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        // Explicit casts: findViewById returns View before API 26, and minSdk is 24.
        threads = (RadioGroup) findViewById(R.id.threads);
        run = (Button) findViewById(R.id.run);
        status = (TextView) findViewById(R.id.status);
        table = (TableLayout) findViewById(R.id.results);
        tableMode = (Button) findViewById(R.id.table_mode);
        tableMode.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View view) {
                startTableMode();
            }
        });
        if (getIntent().getBooleanExtra("table", false)) {
            startTableMode();
        }
        run.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View view) {
                startRun(selectedThreads());
            }
        });
    }

    @Override
    protected void onDestroy() {
        worker.shutdownNow();
        super.onDestroy();
    }

    private int selectedThreads() {
        int checked = threads.getCheckedRadioButtonId();
        if (checked == R.id.threads_4) {
            return 4;
        }
        return checked == R.id.threads_2 ? 2 : 1;
    }

    private void startRun(final int threadCount) {
        run.setEnabled(false);
        status.setText(R.string.running);
        worker.execute(new Runnable() {
            @Override
            public void run() {
                try {
                    List<ModelResult> results = measureAll(threadCount);
                    showOnUi(results, threadCount);
                } catch (IOException | RuntimeException error) {
                    Log.e(TAG, "run failed", error);
                    showErrorOnUi(error);
                }
            }
        });
    }

    /** Runs on the worker thread: load the assets, then measure the models one by one. */
    private List<ModelResult> measureAll(int threadCount) throws IOException {
        final AssetManager assets = getAssets();
        DemoAssets demo = DemoAssets.load(new AssetSource() {
            @Override
            public String[] list() throws IOException {
                return assets.list("");
            }

            @Override
            public InputStream open(String name) throws IOException {
                return assets.open(name);
            }
        });
        List<ModelResult> results = new ArrayList<>();
        for (int i = 0; i < demo.models.size(); i++) {
            ModelManifest model = demo.models.get(i);
            postStatus(String.format(Locale.US, "Running %s (%d/%d)…", model.name, i + 1,
                    demo.models.size()));
            results.add(ModelBench.measure(assets, model, demo.samples, threadCount));
        }
        return results;
    }

    private void startTableMode() {
        run.setEnabled(false);
        tableMode.setEnabled(false);
        status.setText(R.string.running);
        worker.execute(new Runnable() {
            @Override
            public void run() {
                String message;
                try {
                    message = measureTable();
                    Log.i(TAG, message);
                } catch (IOException | RuntimeException error) {
                    Log.e(TAG, "table mode failed", error);
                    message = "Error: " + error.getMessage();
                }
                final String text = message;
                runOnUiThread(new Runnable() {
                    @Override
                    public void run() {
                        status.setText(text);
                        run.setEnabled(true);
                        tableMode.setEnabled(true);
                    }
                });
            }
        });
    }

    /** Runs on the worker thread: time the manifest's models, write the result JSON. */
    private String measureTable() throws IOException {
        File files = getExternalFilesDir(null);
        if (files == null) {
            throw new IOException("no external files folder to write the result to");
        }
        final File pushed = new File(files, TableManifest.FOLDER);
        final AssetManager assets = getAssets();
        AssetSource source = new File(pushed, TableManifest.FILE_NAME).isFile() ? new AssetSource() {
            @Override
            public String[] list() {
                String[] names = pushed.list();
                return names == null ? new String[0] : names;
            }

            @Override
            public InputStream open(String name) throws IOException {
                return new FileInputStream(new File(pushed, name));
            }
        } : new AssetSource() {
            @Override
            public String[] list() throws IOException {
                return assets.list(TableManifest.FOLDER);
            }

            @Override
            public InputStream open(String name) throws IOException {
                return assets.open(TableManifest.FOLDER + "/" + name);
            }
        };
        String json = TableBench.measure(source, new TableTimer.Progress() {
            @Override
            public void step(int done, int total) {
                postStatus(String.format(Locale.US, "Timing the table: %d/%d", done, total));
            }
        });
        // Written to a temporary file first, so an interrupted write leaves the old result whole.
        File result = new File(files, TableResult.FILE_NAME);
        File partial = new File(files, TableResult.FILE_NAME + ".partial");
        try (OutputStream out = new FileOutputStream(partial)) {
            out.write(json.getBytes("UTF-8"));
        }
        if (!partial.renameTo(result)) {
            throw new IOException("could not write " + result);
        }
        return "Wrote " + result + "; import it with mobileprune latency-table MODEL.keras "
                + "--android-assets DIR --from-device latency_result.json --out table.json";
    }

    private void postStatus(final String text) {
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                status.setText(text);
            }
        });
    }

    private void showOnUi(final List<ModelResult> results, final int threadCount) {
        final String summary = String.format(Locale.US,
                "LiteRT %s, %d thread(s), %d samples, %d warm-up + %d timed runs per model. "
                        + "Speedup = baseline p50 / model p50.",
                TensorFlowLite.runtimeVersion(), threadCount, results.get(0).total,
                ModelBench.WARMUP_RUNS, ModelBench.TIMED_RUNS);
        Log.i(TAG, summary + "\n" + ResultTable.toText(results));
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                fillTable(results);
                status.setText(summary);
                run.setEnabled(true);
            }
        });
    }

    private void showErrorOnUi(final Exception error) {
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                table.removeAllViews();
                status.setText("Error: " + error.getMessage());
                run.setEnabled(true);
            }
        });
    }

    private void fillTable(List<ModelResult> results) {
        table.removeAllViews();
        table.addView(row(ResultTable.HEADER, null, true));
        List<String[]> rows = ResultTable.rows(results);
        for (int i = 0; i < rows.size(); i++) {
            table.addView(row(rows.get(i), results.get(i).manifest.description, false));
        }
    }

    private TableRow row(String[] cells, String description, boolean header) {
        TableRow row = new TableRow(this);
        int padding = Math.round(6 * getResources().getDisplayMetrics().density);
        for (int i = 0; i < cells.length; i++) {
            TextView cell = new TextView(this);
            boolean describe = i == 0 && description != null && !description.isEmpty();
            cell.setText(describe ? cells[i] + "\n" + description : cells[i]);
            cell.setPadding(padding, padding, padding, padding);
            if (header) {
                cell.setTypeface(Typeface.DEFAULT_BOLD);
            }
            row.addView(cell);
        }
        return row;
    }
}
