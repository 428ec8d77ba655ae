package dev.mobileprune.demo.core;

import java.io.IOException;
import java.io.InputStream;

/**
 * Where the exported files live: the APK's assets on a phone, a folder on a desktop JVM.
 *
 * <pre>{@code
 * AssetSource source = new AssetSource() {
 *     public String[] list() throws IOException { return getAssets().list(""); }
 *     public InputStream open(String name) throws IOException { return getAssets().open(name); }
 * };
 * }</pre>
 */
public interface AssetSource {
    /** Names of the files at the top level. */
    String[] list() throws IOException;

    /** Opens one file by name; the caller closes it. */
    InputStream open(String name) throws IOException;
}
