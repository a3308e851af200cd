// The ctype parser: return and parameter types split out, names dropped, bad types refused.
import Testing
@testable import LJAsync

@Suite struct CTypeSignatureTests {
    func parse(_ s: String) throws -> CTypeSignature { try CTypeSignature.parse(s) }

    @Test func simple() throws {
        #expect(try parse("void(*)(int)") == CTypeSignature(returnType: "void", parameters: ["int"]))
        #expect(try parse("int (*)(void)").parameters == [])
        #expect(try parse("int(*)()").parameters == [])
    }

    @Test func namesAreDropped() throws {
        let s = try parse("int (*cb)(int x, const char *name, unsigned long long n)")
        #expect(s.returnType == "int")
        #expect(s.parameters == ["int", "const char *", "unsigned long long"])
    }

    @Test func typedefNamesAreTypesNotNames() throws {
        #expect(try parse("int32_t(*)(int8_t, size_t sz, my_handle_t *h)").parameters == ["int8_t", "size_t", "my_handle_t *"])
    }

    @Test func pointerReturnAndStructs() throws {
        let s = try parse("const char *(*)(struct foo *f, union u *, enum color c)")
        #expect(s.returnType == "const char *")
        #expect(s.parameters == ["struct foo *", "union u *", "enum color"])
    }

    @Test func functionPointerParameters() throws {
        let s = try parse("void(*)(int (*cmp)(const void *a, const void *b), void *ud)")
        #expect(s.parameters == ["int (*)(const void * a, const void * b)", "void *"])
    }

    @Test func arraysDecay() throws {
        #expect(try parse("void(*)(int v[3], char name[])").parameters == ["int *", "char *"])
    }

    @Test func refusals() throws {
        #expect(throws: CTypeSignature.ParseError(message: "variadic callbacks are not supported")) { try parse("int(*)(int,...)") }
        #expect(throws: CTypeSignature.ParseError.self) { try parse("int") }
        #expect(throws: CTypeSignature.ParseError.self) { try parse("int(int)") }
        #expect(throws: CTypeSignature.ParseError.self) { try parse("int(*)(int") }
        #expect(throws: CTypeSignature.ParseError.self) { try parse("int(*)(int) extra") }
        #expect(throws: CTypeSignature.ParseError.self) { try parse("int(*)(int{)") }
    }
}
