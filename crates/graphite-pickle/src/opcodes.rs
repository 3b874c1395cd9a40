//! Pickle opcodes, protocols 0 to 5, as CPython's `pickletools` names them.
//!
//! The names matter: error messages quote them so an operator can look the opcode up in
//! `pickletools` documentation or in `python3 -m pickletools` output of the same bytes.

// Protocol 0.
pub(crate) const MARK: u8 = b'(';
pub(crate) const STOP: u8 = b'.';
pub(crate) const POP: u8 = b'0';
pub(crate) const POP_MARK: u8 = b'1';
pub(crate) const DUP: u8 = b'2';
pub(crate) const FLOAT: u8 = b'F';
pub(crate) const INT: u8 = b'I';
pub(crate) const LONG: u8 = b'L';
pub(crate) const NONE: u8 = b'N';
pub(crate) const PERSID: u8 = b'P';
pub(crate) const REDUCE: u8 = b'R';
pub(crate) const STRING: u8 = b'S';
pub(crate) const UNICODE: u8 = b'V';
pub(crate) const APPEND: u8 = b'a';
pub(crate) const BUILD: u8 = b'b';
pub(crate) const GLOBAL: u8 = b'c';
pub(crate) const DICT: u8 = b'd';
pub(crate) const GET: u8 = b'g';
pub(crate) const INST: u8 = b'i';
pub(crate) const LIST: u8 = b'l';
pub(crate) const PUT: u8 = b'p';
pub(crate) const SETITEM: u8 = b's';
pub(crate) const TUPLE: u8 = b't';

// Protocol 1.
pub(crate) const BINFLOAT: u8 = b'G';
pub(crate) const BININT: u8 = b'J';
pub(crate) const BININT1: u8 = b'K';
pub(crate) const BININT2: u8 = b'M';
pub(crate) const BINPERSID: u8 = b'Q';
pub(crate) const BINSTRING: u8 = b'T';
pub(crate) const SHORT_BINSTRING: u8 = b'U';
pub(crate) const BINUNICODE: u8 = b'X';
pub(crate) const EMPTY_DICT: u8 = b'}';
pub(crate) const APPENDS: u8 = b'e';
pub(crate) const BINGET: u8 = b'h';
pub(crate) const LONG_BINGET: u8 = b'j';
pub(crate) const EMPTY_LIST: u8 = b']';
pub(crate) const OBJ: u8 = b'o';
pub(crate) const BINPUT: u8 = b'q';
pub(crate) const LONG_BINPUT: u8 = b'r';
pub(crate) const SETITEMS: u8 = b'u';
pub(crate) const EMPTY_TUPLE: u8 = b')';

// Protocol 2.
pub(crate) const PROTO: u8 = 0x80;
pub(crate) const NEWOBJ: u8 = 0x81;
pub(crate) const EXT1: u8 = 0x82;
pub(crate) const EXT2: u8 = 0x83;
pub(crate) const EXT4: u8 = 0x84;
pub(crate) const TUPLE1: u8 = 0x85;
pub(crate) const TUPLE2: u8 = 0x86;
pub(crate) const TUPLE3: u8 = 0x87;
pub(crate) const NEWTRUE: u8 = 0x88;
pub(crate) const NEWFALSE: u8 = 0x89;
pub(crate) const LONG1: u8 = 0x8a;
pub(crate) const LONG4: u8 = 0x8b;

// Protocol 3.
pub(crate) const BINBYTES: u8 = b'B';
pub(crate) const SHORT_BINBYTES: u8 = b'C';

// Protocol 4.
pub(crate) const SHORT_BINUNICODE: u8 = 0x8c;
pub(crate) const BINUNICODE8: u8 = 0x8d;
pub(crate) const BINBYTES8: u8 = 0x8e;
pub(crate) const EMPTY_SET: u8 = 0x8f;
pub(crate) const ADDITEMS: u8 = 0x90;
pub(crate) const FROZENSET: u8 = 0x91;
pub(crate) const NEWOBJ_EX: u8 = 0x92;
pub(crate) const STACK_GLOBAL: u8 = 0x93;
pub(crate) const MEMOIZE: u8 = 0x94;
pub(crate) const FRAME: u8 = 0x95;

// Protocol 5.
pub(crate) const BYTEARRAY8: u8 = 0x96;
pub(crate) const NEXT_BUFFER: u8 = 0x97;
pub(crate) const READONLY_BUFFER: u8 = 0x98;

/// The highest protocol CPython (3.8+) writes and this decoder reads.
pub(crate) const HIGHEST_PROTOCOL: u8 = 5;

/// `pickletools` name of an opcode, or `None` for a byte that is no opcode at all.
pub(crate) fn name(op: u8) -> Option<&'static str> {
    Some(match op {
        MARK => "MARK",
        STOP => "STOP",
        POP => "POP",
        POP_MARK => "POP_MARK",
        DUP => "DUP",
        FLOAT => "FLOAT",
        INT => "INT",
        LONG => "LONG",
        NONE => "NONE",
        PERSID => "PERSID",
        REDUCE => "REDUCE",
        STRING => "STRING",
        UNICODE => "UNICODE",
        APPEND => "APPEND",
        BUILD => "BUILD",
        GLOBAL => "GLOBAL",
        DICT => "DICT",
        GET => "GET",
        INST => "INST",
        LIST => "LIST",
        PUT => "PUT",
        SETITEM => "SETITEM",
        TUPLE => "TUPLE",
        BINFLOAT => "BINFLOAT",
        BININT => "BININT",
        BININT1 => "BININT1",
        BININT2 => "BININT2",
        BINPERSID => "BINPERSID",
        BINSTRING => "BINSTRING",
        SHORT_BINSTRING => "SHORT_BINSTRING",
        BINUNICODE => "BINUNICODE",
        EMPTY_DICT => "EMPTY_DICT",
        APPENDS => "APPENDS",
        BINGET => "BINGET",
        LONG_BINGET => "LONG_BINGET",
        EMPTY_LIST => "EMPTY_LIST",
        OBJ => "OBJ",
        BINPUT => "BINPUT",
        LONG_BINPUT => "LONG_BINPUT",
        SETITEMS => "SETITEMS",
        EMPTY_TUPLE => "EMPTY_TUPLE",
        PROTO => "PROTO",
        NEWOBJ => "NEWOBJ",
        EXT1 => "EXT1",
        EXT2 => "EXT2",
        EXT4 => "EXT4",
        TUPLE1 => "TUPLE1",
        TUPLE2 => "TUPLE2",
        TUPLE3 => "TUPLE3",
        NEWTRUE => "NEWTRUE",
        NEWFALSE => "NEWFALSE",
        LONG1 => "LONG1",
        LONG4 => "LONG4",
        BINBYTES => "BINBYTES",
        SHORT_BINBYTES => "SHORT_BINBYTES",
        SHORT_BINUNICODE => "SHORT_BINUNICODE",
        BINUNICODE8 => "BINUNICODE8",
        BINBYTES8 => "BINBYTES8",
        EMPTY_SET => "EMPTY_SET",
        ADDITEMS => "ADDITEMS",
        FROZENSET => "FROZENSET",
        NEWOBJ_EX => "NEWOBJ_EX",
        STACK_GLOBAL => "STACK_GLOBAL",
        MEMOIZE => "MEMOIZE",
        FRAME => "FRAME",
        BYTEARRAY8 => "BYTEARRAY8",
        NEXT_BUFFER => "NEXT_BUFFER",
        READONLY_BUFFER => "READONLY_BUFFER",
        _ => return None,
    })
}

/// Opcodes that import, call or look up objects outside the pickle. Each of them is how a
/// pickle runs code (`os.system` via GLOBAL + REDUCE is the classic), so they are refused
/// on sight, before their arguments are even read.
pub(crate) fn is_forbidden(op: u8) -> bool {
    matches!(
        op,
        GLOBAL
            | STACK_GLOBAL
            | REDUCE
            | BUILD
            | INST
            | OBJ
            | NEWOBJ
            | NEWOBJ_EX
            | PERSID
            | BINPERSID
            | EXT1
            | EXT2
            | EXT4
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_opcode_is_distinct() {
        let named: Vec<u8> = (0..=255u8).filter(|&b| name(b).is_some()).collect();
        // pickletools lists 68 opcodes for protocols 0..=5.
        assert_eq!(named.len(), 68);
        assert!(name(0x00).is_none());
        assert!(name(0xff).is_none());
    }

    #[test]
    fn forbidden_opcodes_are_named() {
        let forbidden: Vec<&str> = (0..=255u8)
            .filter(|&b| is_forbidden(b))
            .filter_map(name)
            .collect();
        assert_eq!(forbidden.len(), 13);
    }
}
