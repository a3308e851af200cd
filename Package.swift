// swift-tools-version:6.0
// The Swift core of lj-async: one shared library that LuaJIT loads with ffi.load.
import PackageDescription

// `make sanitize` sets LJASYNC_SANITIZE=1: the sanitizer runtimes (TSan's above all) leave
// symbols for the executable to define, which `-z defs` rejects when the core links; that build
// alone drops it. Every other build keeps `-z defs`.
let sanitizing = Context.environment["LJASYNC_SANITIZE"] == "1"
let noUndefined: [LinkerSetting] =
    sanitizing ? [] : [.unsafeFlags(["-Xlinker", "-z", "-Xlinker", "defs"])]

let package = Package(
    name: "lj-async",
    products: [
        // libljasync_core.so; installed as PREFIX/lib/lua/5.1/ljasync_core.so.
        .library(name: "ljasync_core", type: .dynamic, targets: ["LJAsync"]),
    ],
    targets: [
        // LuaJIT's headers only. The Swift code calls lua_* through them and links to the
        // hidden forwarders of CLJAsyncLua, so the core has no undefined lua_* symbols.
        .systemLibrary(name: "CLuaJIT", path: "Sources/CLuaJIT"),
        // LuaJIT's C API bound at load time from whatever host loaded the core (a program that
        // exports it, a LuaJIT loaded privately, or $LJASYNC_LUAJIT): docs/embedding.md.
        .target(name: "CLJAsyncLua", dependencies: ["CLJAsync"], path: "Sources/CLJAsyncLua"),
        .systemLibrary(name: "CFFI", path: "Sources/CFFI", pkgConfig: "libffi"),
        // The x86-64 callback entry stub (assembly); libffi closures serve other platforms.
        .target(name: "CLJAsyncEntry", path: "Sources/CLJAsyncEntry"),
        // The C ABI (include/ljasync.h), embedded for Lua's ffi.cdef (cdef.c), and the GNU calls
        // Swift's Glibc module hides (shims.c, built with _GNU_SOURCE).
        .target(name: "CLJAsync", dependencies: ["CFFI"], path: "Sources/CLJAsync"),
        .target(
            name: "LJAsync",
            dependencies: ["CLuaJIT", "CFFI", "CLJAsyncEntry", "CLJAsyncLua", "CLJAsync"],
            // `@implementation @c`: each export is checked against its prototype in ljasync.h.
            swiftSettings: [.enableExperimentalFeature("CImplementation")],
            linkerSettings: [
                // Never unloaded: threads may still run our code when the last Lua state
                // that loaded us closes its clib handle.
                .unsafeFlags(["-Xlinker", "-z", "-Xlinker", "nodelete"]),
            ]
                // Every symbol resolved at link time: a lua_* call with no forwarder is a link
                // error here, not a symbol lookup error in some host.
                + noUndefined
        ),
        .testTarget(
            name: "LJAsyncTests",
            dependencies: ["LJAsync"],
            // A LuaJIT in the test process for the forwarders to bind (its global symbols).
            linkerSettings: [.linkedLibrary("luajit-5.1")]
        ),
    ]
)
