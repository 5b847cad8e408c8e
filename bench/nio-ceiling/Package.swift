// swift-tools-version:5.9
// The SwiftNIO ceiling for the benchmarks: a minimal HTTP/1.1 server that
// reads the request body and answers a fixed 200. Nothing else.
import PackageDescription

let package = Package(
    name: "NIOCeiling",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "NIOCeiling",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
    ]
)
