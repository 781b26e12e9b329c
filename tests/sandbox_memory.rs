//! A component that declares many large memories is refused at
//! instantiation, and the host's resident memory stays bounded while it
//! tries. A test binary of its own, so the process's peak RSS (`VmHWM`)
//! measures this test alone.

use std::sync::Arc;

use alerthost::runtime::{FailureKind, Limits, LiveHandler, MAX_MEMORIES, Runtime};
use alerthost_tests::{
    handler_world_component, handler_world_types, proc_status_bytes, runtime_options,
};
use wasm_encoder::{
    CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemorySection,
    MemoryType, Module, StartSection,
};

/// 64 KiB pages in 64 MiB.
const PAGES_64_MIB: u64 = 1024;

/// A handler-world component whose one core module declares `memories`
/// memories of `pages` pages each and, in its start function, fills every
/// one of them (so each granted page becomes resident).
fn many_memories(memories: u32, pages: u64) -> Vec<u8> {
    let mut types = handler_world_types();
    // start
    types.ty().function([], []);

    let mut functions = FunctionSection::new();
    for ty in 0..4 {
        functions.function(ty);
    }
    let mut memory_section = MemorySection::new();
    for _ in 0..memories {
        memory_section.memory(MemoryType {
            minimum: pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("init", ExportKind::Func, 0);
    exports.export("handle", ExportKind::Func, 1);
    exports.export("cabi_realloc", ExportKind::Func, 2);

    let mut code = CodeSection::new();
    for _ in 0..3 {
        let mut trap = Function::new([]);
        trap.instruction(&Instruction::Unreachable);
        trap.instruction(&Instruction::End);
        code.function(&trap);
    }
    let mut fill = Function::new([]);
    let bytes = i32::try_from(pages * 65536).expect("a fill length that fits i32");
    for memory in 0..memories {
        fill.instruction(&Instruction::I32Const(0));
        fill.instruction(&Instruction::I32Const(1));
        fill.instruction(&Instruction::I32Const(bytes));
        fill.instruction(&Instruction::MemoryFill(memory));
    }
    fill.instruction(&Instruction::End);
    code.function(&fill);

    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&memory_section)
        .section(&exports)
        .section(&StartSection { function_index: 3 })
        .section(&code);
    handler_world_component(module.finish(), true)
}

/// The peak resident set of this process, in bytes.
fn peak_rss() -> u64 {
    proc_status_bytes("VmHWM")
}

#[test]
fn many_large_memories_are_refused_and_rss_stays_bounded() {
    let runtime = Runtime::new(&runtime_options()).unwrap();
    let limits = Limits::default();
    // Over the count of memories an instance may have, and within it: the
    // memories together are over the 64 MiB of the instance either way.
    for memories in [100, MAX_MEMORIES as u32] {
        let bytes = many_memories(memories, PAGES_64_MIB);
        let code = runtime
            .load_bytes(&bytes, &limits)
            .expect("the component is a well-formed handler");
        let failure = LiveHandler::new(Arc::new(code), Vec::new(), None).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Init, "{}", failure.text);
        assert!(failure.text.contains("memor"), "{}", failure.text);
    }
    let peak = peak_rss();
    assert!(
        peak < 256 << 20,
        "the host's peak RSS reached {} MiB",
        peak >> 20
    );
}

#[test]
fn memories_within_the_limit_together_are_granted() {
    let runtime = Runtime::new(&runtime_options()).unwrap();
    // Four memories of 8 MiB: 32 MiB in all, within the default 64 MiB.
    let code = runtime
        .load_bytes(&many_memories(4, 128), &Limits::default())
        .unwrap();
    let failure = LiveHandler::new(Arc::new(code), Vec::new(), None).unwrap_err();
    // It instantiates (the start function fills all four), then `init`
    // traps: the guest's `init` is `unreachable`.
    assert_eq!(failure.kind, FailureKind::Init);
    assert!(failure.text.contains("init failed"), "{}", failure.text);
}
