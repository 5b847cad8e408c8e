// swift-tools-version:6.1
// plainflow-relay: targets in data-flow order. Dependencies point downstream only:
//   ingest ──► message ──► spool ──► forward   (daemon wires them, the CLI runs the daemon)
//   import ──► message ──► spool               (historical files, run by the CLI)
import PackageDescription

let package = Package(
    name: "plainflow-relay",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "plainflow-relay", targets: ["plainflow-relay"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/yaslab/CSV.swift.git", from: "2.5.2"),
    ],
    targets: [
        // C libraries, reached through module maps and typed shims only.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CMalloc"),  // glibc's malloc.h: the daemon returns freed heap to the OS

        // 1. message: the identify contract. Pure: no I/O, clock passed in.
        .target(name: "RelayMessage"),

        // 2. spool: the SQLite outbox. The only importer of CSQLite.
        .target(name: "RelaySpool", dependencies: [
            "CSQLite",
            .product(name: "Logging", package: "swift-log"),
        ]),

        // 3. forward: batching, libcurl transport, retry policy. The only importer of CCurl.
        .target(name: "RelayForward", dependencies: [
            "CCurl", "RelaySpool",
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "Crypto", package: "swift-crypto"),  // a refused key's fingerprint in the log
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // 0. ingest: listeners, HTTP routes, status mapping. Never sees SQL.
        .target(name: "RelayIngest", dependencies: [
            "RelayMessage", "RelaySpool",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOExtras", package: "swift-nio-extras"),
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // 0'. import: historical NDJSON/CSV files into the spool at bulk priority,
        // validated by the message rules; resumable, idempotent. Never sees SQL.
        .target(name: "RelayImport", dependencies: [
            "RelayMessage", "RelaySpool",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "CSV", package: "CSV.swift"),
        ]),

        // Composition root: config, telemetry, one ServiceGroup. No business logic.
        .target(name: "RelayDaemon", dependencies: [
            "RelayIngest", "RelayMessage", "RelaySpool", "RelayForward", "CMalloc",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),

        .executableTarget(name: "plainflow-relay", dependencies: [
            "RelayDaemon", "RelayIngest", "RelayMessage", "RelaySpool", "RelayForward", "RelayImport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "RelayMessageTests", dependencies: ["RelayMessage"]),
        .testTarget(name: "RelaySpoolTests", dependencies: ["RelaySpool"], exclude: ["Fixtures"]),
        .testTarget(name: "RelayForwardTests", dependencies: ["RelayForward", "RelaySpool", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "RelayIngestTests", dependencies: [
            "RelayIngest", "RelayMessage", "RelaySpool",
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "RelayDaemonTests", dependencies: ["RelayDaemon", "RelaySpool"]),
        .testTarget(name: "RelayImportTests", dependencies: ["RelayImport", "RelayMessage", "RelaySpool"], exclude: ["Fixtures"]),
        .testTarget(name: "EndToEndTests", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
