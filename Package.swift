// swift-tools-version:6.0
// The Swift core of lj-async: one shared library that LuaJIT loads with ffi.load.
import PackageDescription

let package = Package(
    name: "lj-async",
    products: [
        // libljasync_core.so; installed as PREFIX/lib/lua/5.1/ljasync_core.so.
        .library(name: "ljasync_core", type: .dynamic, targets: ["LJAsync"]),
    ],
    targets: [
        // LuaJIT's headers only: the lua_* symbols come from the host process (the luajit
        // binary or the application embedding LuaJIT), as for any Lua C module.
        .systemLibrary(name: "CLuaJIT", path: "Sources/CLuaJIT"),
        .systemLibrary(name: "CFFI", path: "Sources/CFFI", pkgConfig: "libffi"),
        // The x86-64 callback entry stub (assembly); libffi closures serve other platforms.
        .target(name: "CLJAsyncEntry", path: "Sources/CLJAsyncEntry"),
        .target(
            name: "LJAsync",
            dependencies: ["CLuaJIT", "CFFI", "CLJAsyncEntry"],
            linkerSettings: [
                // Never unloaded: threads may still run our code when the last Lua state
                // that loaded us closes its clib handle.
                .unsafeFlags(["-Xlinker", "-z", "-Xlinker", "nodelete"]),
            ]
        ),
        .testTarget(
            name: "LJAsyncTests",
            dependencies: ["LJAsync"],
            linkerSettings: [.linkedLibrary("luajit-5.1")]
        ),
    ]
)
