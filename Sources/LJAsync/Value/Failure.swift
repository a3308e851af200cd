// The one encoding of a failure that crosses states as text: LJASYNC_FAILURE_TAG, then the text.
import CLJAsync

extension Message {
    /// A failure message holding `text` (the leading tag keeps the handle bit clear, and no
    /// successful encoding starts with it).
    static func failure(_ text: String) -> UnsafeMutablePointer<Message> {
        var bytes: [UInt8] = [UInt8(LJASYNC_FAILURE_TAG)]
        bytes.append(contentsOf: text.utf8)
        return bytes.withUnsafeBytes { Message.create($0.baseAddress!, $0.count) }
    }

    /// The text of a failure message (the bytes after its tag).
    static func failureText(_ m: UnsafeMutablePointer<Message>) -> String {
        let n = m.pointee.count
        guard n > 1 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: m.pointee.bytes + 1, count: n - 1), as: UTF8.self)
    }
}
