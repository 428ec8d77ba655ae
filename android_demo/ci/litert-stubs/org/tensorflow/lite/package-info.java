/**
 * Compile-time stand-ins for the few LiteRT ({@code com.google.ai.edge.litert:litert}) classes
 * the demo app calls, written from LiteRT's documented Java API.
 *
 * <p>They exist only so that {@code android_demo/ci/build_apk.sh} can compile the app with
 * Debian's packages, where Google's Maven repository (and so the real library) is out of reach.
 * The script compiles against them but never packages them: the APK it builds has neither
 * LiteRT's Java classes nor its native libraries, so it is a build check, not an app to ship.
 * Every method throws; a signature that drifts from the real API fails the app's compilation in
 * Android Studio, not here, so keep them to what the app uses.
 */
package org.tensorflow.lite;
