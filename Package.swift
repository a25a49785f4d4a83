// swift-tools-version:6.0
import PackageDescription

// sluice: a batch ETL tool that never loses or duplicates a record.
// Core (values, records, batches, stage protocols, runner) is small; every
// integration lives in its own module; the CLI is thin.
let package = Package(
    name: "sluice",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sluice", targets: ["SluiceCLI"]),
        .executable(name: "sluice-bench", targets: ["SluiceBench"]),
        .library(name: "SluiceKit", targets: ["SluiceKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        // zlib from the system (zlib1g-dev), for gzip input.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // A prefetch hint (a static inline C function; no library).
        .systemLibrary(name: "CPrefetch", path: "Sources/CPrefetch"),
        // Write-behind of output files (Linux's sync_file_range; a static inline C function).
        .systemLibrary(name: "CWriteBehind", path: "Sources/CWriteBehind"),
        // libcurl and libxml2, opened with dlopen when first used (not mapped in every run).
        .target(name: "CLazyLibs", path: "Sources/CLazyLibs", linkerSettings: [.linkedLibrary("dl")]),
        .target(
            name: "SluiceCore",
            dependencies: [
                "CPrefetch",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(name: "SluiceConfig", dependencies: ["SluiceCore", "Yams"]),
        .target(name: "SluiceFiles", dependencies: ["SluiceCore", "SluiceConfig", "SluiceDumps", "CZlib", "CWriteBehind"]),
        .target(
            name: "SluiceSQLite",
            dependencies: ["SluiceCore", "SluiceConfig", "SluiceDumps", .product(name: "GRDB", package: "GRDB.swift")]),
        .target(name: "SluiceMaxMind", dependencies: ["CPrefetch"]),
        .target(name: "SluiceDumps"),
        .target(name: "SluiceI18n", dependencies: ["Yams"]),
        .target(
            name: "SluiceEnrich",
            dependencies: ["SluiceCore", "SluiceConfig", "SluiceFiles", "SluiceMaxMind", "SluiceI18n", .product(name: "Crypto", package: "swift-crypto")]),
        // Vendor callback archives: raw HTTP requests, JSON/XML/form bodies, signatures.
        .target(
            name: "SluiceCallbacks",
            dependencies: ["SluiceCore", "SluiceConfig", "SluiceFiles", "CLazyLibs", .product(name: "Crypto", package: "swift-crypto")]),
        // BigQuery: service-account auth, tables, insertAll streaming through the durable buffer.
        .target(
            name: "SluiceBigQuery",
            dependencies: [
                "SluiceCore", "SluiceConfig", "CLazyLibs", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"), .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "SluiceKit",
            dependencies: ["SluiceCore", "SluiceConfig", "SluiceFiles", "SluiceSQLite", "SluiceEnrich", "SluiceCallbacks", "SluiceBigQuery"]),
        .executableTarget(
            name: "SluiceCLI",
            dependencies: [
                "SluiceKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Micro-benchmarks of the hot parts: `swift run -c release sluice-bench`.
        .executableTarget(name: "SluiceBench", dependencies: ["SluiceCore", "SluiceFiles", "SluiceI18n", "SluiceMaxMind"]),
        // Shared by the tests only: paths, scratch folders, Python reference scripts.
        .target(name: "SluiceTestSupport", path: "Sources/SluiceTestSupport"),
        .testTarget(name: "SluiceCoreTests", dependencies: ["SluiceCore", "SluiceTestSupport"], exclude: ["reference.py", "cron_reference.py"]),
        .testTarget(name: "SluiceConfigTests", dependencies: ["SluiceConfig", "SluiceKit", "SluiceTestSupport", "Yams"]),
        .testTarget(
            name: "SluiceFilesTests", dependencies: ["SluiceFiles", "CZlib", "CWriteBehind", "SluiceSQLite", "SluiceTestSupport"],
            exclude: ["gzip_reference.py", "csv_reference.py"]),
        .testTarget(name: "SluiceDumpsTests", dependencies: ["SluiceDumps", "SluiceTestSupport"], exclude: ["csv_reference.py"]),
        .testTarget(name: "SluiceMaxMindTests", dependencies: ["SluiceMaxMind", "SluiceTestSupport"], exclude: ["reference_lookup.py"]),
        .testTarget(name: "SluiceI18nTests", dependencies: ["SluiceI18n", "SluiceTestSupport", "Yams"], exclude: ["i18n_reference.py"]),
        .testTarget(name: "SluiceEnrichTests", dependencies: ["SluiceEnrich", "SluiceKit", "SluiceSQLite", "SluiceTestSupport"]),
        .testTarget(
            name: "SluiceCallbacksTests", dependencies: ["SluiceCallbacks", "SluiceCore", "SluiceTestSupport"],
            exclude: ["callbacks_reference.py"]),
        .testTarget(
            name: "SluiceBigQueryTests", dependencies: ["SluiceBigQuery", "SluiceCore", "SluiceFiles", "SluiceSQLite", "SluiceTestSupport"],
            exclude: ["fake_bigquery.py", "bq_read.py"]),
        .testTarget(
            name: "SluiceKitTests",
            dependencies: ["SluiceKit", "SluiceSQLite", "SluiceFiles", "SluiceTestSupport", .product(name: "GRDB", package: "GRDB.swift")]),
    ],
    swiftLanguageModes: [.v6]
)
