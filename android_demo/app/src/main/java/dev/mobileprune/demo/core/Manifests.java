package dev.mobileprune.demo.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/**
 * Checks a set of manifests belongs together and puts them in table order.
 *
 * <pre>{@code
 * List<ModelManifest> rows = Manifests.ordered(parsed);
 * ModelManifest baseline = Manifests.baseline(rows);
 * }</pre>
 */
public final class Manifests {
    private Manifests() {}

    /**
     * Returns the manifests sorted by their {@code order}, after checking there is exactly one
     * baseline and every model reads the same sample file.
     */
    public static List<ModelManifest> ordered(List<ModelManifest> manifests) {
        if (manifests.isEmpty()) {
            throw new IllegalArgumentException("no model manifests found in the assets; run "
                    + "mobileprune demo --android-assets app/src/main/assets");
        }
        List<ModelManifest> sorted = new ArrayList<ModelManifest>(manifests);
        Collections.sort(sorted, new Comparator<ModelManifest>() {
            @Override
            public int compare(ModelManifest a, ModelManifest b) {
                return a.order != b.order ? (a.order < b.order ? -1 : 1) : a.name.compareTo(b.name);
            }
        });
        baseline(sorted);
        ModelManifest first = sorted.get(0);
        for (ModelManifest manifest : sorted) {
            if (!manifest.samples.equals(first.samples)) {
                throw new IllegalArgumentException("models \"" + first.name + "\" and \""
                        + manifest.name + "\" use different sample files; export them together");
            }
        }
        return sorted;
    }

    /** The single manifest flagged as baseline; throws if there is none or more than one. */
    public static ModelManifest baseline(List<ModelManifest> manifests) {
        ModelManifest found = null;
        for (ModelManifest manifest : manifests) {
            if (!manifest.baseline) {
                continue;
            }
            if (found != null) {
                throw new IllegalArgumentException("two baselines (\"" + found.name + "\" and \""
                        + manifest.name + "\"); export all models in one call");
            }
            found = manifest;
        }
        if (found == null) {
            throw new IllegalArgumentException("no manifest is marked as baseline; export all "
                    + "models in one call (the first one is the baseline)");
        }
        return found;
    }
}
