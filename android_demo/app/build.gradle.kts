plugins {
    id("com.android.application")
}

android {
    namespace = "dev.mobileprune.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.mobileprune.demo"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            // Latency is only meaningful in a non-debuggable build; sign with the debug key so
            // `./gradlew installRelease` works without a keystore.
            signingConfig = signingConfigs.getByName("debug")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    androidResources {
        // Models stay uncompressed in the APK so they can be read (or mapped) as they are.
        noCompress += "tflite"
    }
}

dependencies {
    // LiteRT, the successor of TensorFlow Lite; keeps the org.tensorflow.lite.Interpreter API.
    implementation("com.google.ai.edge.litert:litert:1.4.1")

    // Plain-JVM tests of dev.mobileprune.demo.core (also run by tests/android in the Python suite).
    testImplementation("junit:junit:4.13.2")
}
