// Splits a C function pointer type string into its return type and parameter types.

/// A function pointer type split into plain type strings, declarator names removed.
///
/// The parser only finds structure; LuaJIT's ffi in the creating state checks and resolves
/// each part. Pure value type, usable from any thread.
public struct CTypeSignature: Equatable, Sendable {
    public var returnType: String
    public var parameters: [String]

    public init(returnType: String, parameters: [String]) {
        self.returnType = returnType
        self.parameters = parameters
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Parses `RET (*[name])(PARAMS)`. Throws for variadic, non-function and malformed types.
    public static func parse(_ text: String) throws -> CTypeSignature {
        var tokens = try tokenize(text)
        // Calling-convention words change nothing on the platforms we build for.
        tokens.removeAll { ignoredWords.contains($0) }
        guard !tokens.isEmpty else { throw ParseError(message: "empty type") }

        var pos = 0
        let specEnd = skipSpecifiers(tokens, from: 0)
        guard specEnd > 0 else { throw ParseError(message: "expected a return type") }
        pos = specEnd
        while pos < tokens.count, tokens[pos] == "*" || qualifiers.contains(tokens[pos]) { pos += 1 }
        let returnTokens = Array(tokens[0..<pos])

        guard pos < tokens.count, tokens[pos] == "(" else {
            throw ParseError(message: "not a function pointer type")
        }
        guard pos + 1 < tokens.count, tokens[pos + 1] == "*" else {
            // "int(int)" is a function type; callbacks need a pointer to one.
            throw ParseError(message: "not a function pointer type (write it as 'RET(*)(ARGS)')")
        }
        // (* [qualifiers] [name])
        var p = pos + 2
        while p < tokens.count, qualifiers.contains(tokens[p]) { p += 1 }
        if p < tokens.count, isIdentifier(tokens[p]) { p += 1 }
        guard p < tokens.count, tokens[p] == ")" else {
            throw ParseError(message: "unsupported declarator (use a typedef for function pointers returning function pointers)")
        }
        p += 1
        guard p < tokens.count, tokens[p] == "(" else {
            throw ParseError(message: "not a function pointer type")
        }
        let close = try matchingParen(tokens, p)
        guard close == tokens.count - 1 else {
            throw ParseError(message: "unexpected '\(tokens[close + 1])' after the parameter list")
        }
        let params = try splitParameters(Array(tokens[(p + 1)..<close]))
        return CTypeSignature(returnType: join(returnTokens), parameters: params)
    }

    // -- Parameters --

    static func splitParameters(_ tokens: [String]) throws -> [String] {
        if tokens.isEmpty || tokens == ["void"] { return [] }
        var groups: [[String]] = [[]]
        var depth = 0
        for t in tokens {
            if t == "(" || t == "[" { depth += 1 }
            if t == ")" || t == "]" { depth -= 1 }
            if t == "," && depth == 0 { groups.append([]) } else { groups[groups.count - 1].append(t) }
        }
        var out: [String] = []
        for (i, g) in groups.enumerated() {
            if g == ["..."] { throw ParseError(message: "variadic callbacks are not supported") }
            if g.isEmpty { throw ParseError(message: "parameter \(i + 1) is empty") }
            out.append(try abstractType(g, index: i + 1))
        }
        return out
    }

    /// Removes the declarator name and decays a trailing array to a pointer, as C does for parameters.
    static func abstractType(_ tokens: [String], index: Int) throws -> String {
        let specEnd = skipSpecifiers(tokens, from: 0)
        guard specEnd > 0 else {
            throw ParseError(message: "parameter \(index): expected a type, got '\(tokens[0])'")
        }
        var out = Array(tokens[0..<specEnd])
        var i = specEnd
        var depth = 0            // depth of declarator grouping parens: "(*name)"
        var paramDepth = 0       // depth inside nested parameter lists: names there stay
        var groupingStack: [Bool] = []
        while i < tokens.count {
            let t = tokens[i]
            if t == "(" {
                let grouping = paramDepth == 0 && i + 1 < tokens.count && tokens[i + 1] == "*"
                groupingStack.append(grouping)
                if grouping { depth += 1 } else { paramDepth += 1 }
                out.append(t)
            } else if t == ")" {
                guard let grouping = groupingStack.popLast() else {
                    throw ParseError(message: "parameter \(index): unbalanced ')'")
                }
                if grouping { depth -= 1 } else { paramDepth -= 1 }
                out.append(t)
            } else if t == "[" && paramDepth == 0 && depth == 0 {
                // Array parameter: decays to a pointer to its element.
                guard let close = tokens[i...].firstIndex(of: "]") else {
                    throw ParseError(message: "parameter \(index): unbalanced '['")
                }
                out.append("*")
                i = close
            } else if isIdentifier(t) && !isKeyword(t) && paramDepth == 0 {
                // The parameter's name: dropped.
            } else {
                out.append(t)
            }
            i += 1
        }
        guard groupingStack.isEmpty else { throw ParseError(message: "parameter \(index): unbalanced '('") }
        return join(out)
    }

    // -- Specifiers --

    /// Index just past the declaration specifiers: qualifiers, type keywords, one typedef name
    /// (only when no type keyword came first) and `struct/union/enum TAG`.
    static func skipSpecifiers(_ tokens: [String], from start: Int) -> Int {
        var i = start
        var haveType = false
        while i < tokens.count {
            let t = tokens[i]
            if qualifiers.contains(t) || storageWords.contains(t) {
                i += 1
            } else if typeKeywords.contains(t) {
                haveType = true; i += 1
            } else if t == "struct" || t == "union" || t == "enum" {
                haveType = true; i += 1
                if i < tokens.count, isIdentifier(tokens[i]) { i += 1 }
            } else if isIdentifier(t) && !haveType {
                haveType = true; i += 1  // a typedef name such as int32_t or my_handle_t
            } else {
                break
            }
        }
        return haveType ? i : start
    }

    static let qualifiers: Set<String> = ["const", "volatile", "restrict", "__restrict", "__restrict__",
                                          "__const", "__volatile", "__volatile__"]
    static let storageWords: Set<String> = ["__extension__", "register"]
    static let ignoredWords: Set<String> = ["__cdecl", "__stdcall", "__fastcall", "__thiscall", "CALLBACK", "WINAPI"]
    static let typeKeywords: Set<String> = ["void", "bool", "_Bool", "char", "short", "int", "long", "float", "double",
                                            "signed", "unsigned", "__signed", "__signed__", "complex", "_Complex", "__complex__"]

    static func isKeyword(_ t: String) -> Bool {
        qualifiers.contains(t) || typeKeywords.contains(t) || storageWords.contains(t)
            || t == "struct" || t == "union" || t == "enum"
    }

    static func isIdentifier(_ t: String) -> Bool {
        guard let f = t.utf8.first else { return false }
        return f == UInt8(ascii: "_") || (f | 0x20) >= UInt8(ascii: "a") && (f | 0x20) <= UInt8(ascii: "z")
    }

    // -- Tokens --

    static func tokenize(_ text: String) throws -> [String] {
        var tokens: [String] = []
        let bytes = Array(text.utf8)
        var i = 0
        func isIdent(_ c: UInt8) -> Bool {
            c == UInt8(ascii: "_") || (c >= 48 && c <= 57) || ((c | 0x20) >= 97 && (c | 0x20) <= 122)
        }
        while i < bytes.count {
            let c = bytes[i]
            if c == 32 || c == 9 || c == 10 || c == 13 { i += 1; continue }
            if isIdent(c) {
                var j = i
                while j < bytes.count, isIdent(bytes[j]) { j += 1 }
                tokens.append(String(decoding: bytes[i..<j], as: UTF8.self))
                i = j
            } else if c == UInt8(ascii: "."), i + 2 < bytes.count, bytes[i + 1] == c, bytes[i + 2] == c {
                tokens.append("..."); i += 3
            } else if "*()[],".utf8.contains(c) {
                tokens.append(String(UnicodeScalar(c))); i += 1
            } else {
                throw ParseError(message: "unexpected character '\(String(UnicodeScalar(c)))'")
            }
        }
        return tokens
    }

    static func matchingParen(_ tokens: [String], _ open: Int) throws -> Int {
        var depth = 0
        for i in open..<tokens.count {
            if tokens[i] == "(" { depth += 1 }
            if tokens[i] == ")" { depth -= 1; if depth == 0 { return i } }
        }
        throw ParseError(message: "unbalanced '('")
    }

    static func join(_ tokens: [String]) -> String {
        var s = ""
        for t in tokens {
            let glued = t == ")" || t == "]" || t == "," || s.last == "(" || s.last == "["
                || (t == "(" && s.last == ")")
            if !s.isEmpty, !glued { s += " " }
            s += t
        }
        return s
    }
}
