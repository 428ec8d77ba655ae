package dev.mobileprune.demo.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;

/** An {@link AssetSource} over a folder, for running the app's loading code on a desktop JVM. */
final class DirectorySource implements AssetSource {
    private final File folder;

    DirectorySource(File folder) {
        this.folder = folder;
    }

    @Override
    public String[] list() throws IOException {
        String[] names = folder.list();
        if (names == null) {
            throw new IOException(folder + " is not a readable folder");
        }
        return names;
    }

    @Override
    public InputStream open(String name) throws IOException {
        return new FileInputStream(new File(folder, name));
    }
}
