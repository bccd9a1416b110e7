//! Number formatting and CSV row writing, straight into byte buffers: the quoted id parts of
//! `transactions.csv`, amounts in Python's float style, weights in millionths, whole rows.

/// `'a','b',...`: each part single-quoted and followed by a comma.
pub(crate) fn quoted_part(parts: &[&str]) -> Vec<u8> {
    let mut v = Vec::with_capacity(48);
    for p in parts {
        v.push(b'\'');
        v.extend_from_slice(p.as_bytes());
        v.extend_from_slice(b"',");
    }
    v
}

/// A customer's fields of a transaction row: `'Cxxx','age','gender','28007',`.
pub(crate) fn customer_part(id: &str, age: u8, gender: u8) -> Vec<u8> {
    let mut part = Vec::with_capacity(40);
    part.extend_from_slice(b"'");
    part.extend_from_slice(id.as_bytes());
    part.extend_from_slice(b"','");
    part.push(age);
    part.extend_from_slice(b"','");
    part.push(gender);
    part.extend_from_slice(b"','28007',");
    part
}

/// [`customer_part`]'s bytes with another gender.
pub(crate) fn with_gender(customer_part: &[u8], gender: u8) -> Vec<u8> {
    let mut part = customer_part.to_vec();
    let gpos = part.len() - "M','28007',".len();
    part[gpos] = gender;
    part
}

/// One row of `transactions.csv` from its pre-formatted customer and merchant parts.
pub(crate) fn push_transaction(
    buf: &mut Vec<u8>,
    step: u32,
    customer_part: &[u8],
    merchant_part: &[u8],
    cents: i64,
    fraud: bool,
) {
    push_u64(buf, step as u64);
    buf.push(b',');
    buf.extend_from_slice(customer_part);
    buf.extend_from_slice(merchant_part);
    push_amount(buf, cents);
    buf.extend_from_slice(if fraud { b",1\n" } else { b",0\n" });
}

/// One row of `CustomerImportance.csv`.
pub(crate) fn push_importance(
    buf: &mut Vec<u8>,
    customer: &str,
    merchant: &str,
    weight: i64,
    category: &str,
    fraud: bool,
) {
    buf.push(b'\'');
    buf.extend_from_slice(customer.as_bytes());
    buf.extend_from_slice(b"','");
    buf.extend_from_slice(merchant.as_bytes());
    buf.extend_from_slice(b"',");
    push_weight(buf, weight);
    buf.extend_from_slice(b",'");
    buf.extend_from_slice(category.as_bytes());
    buf.extend_from_slice(if fraud { b"',1\n" } else { b"',0\n" });
}

pub(crate) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Writes cents like Python prints a float with two decimals: `4.55`, `12.5`, `30.0`.
pub(crate) fn push_amount(buf: &mut Vec<u8>, cents: i64) {
    let cents = cents.unsigned_abs();
    push_u64(buf, cents / 100);
    buf.push(b'.');
    let frac = cents % 100;
    buf.push(b'0' + (frac / 10) as u8);
    if !frac.is_multiple_of(10) {
        buf.push(b'0' + (frac % 10) as u8);
    }
}

/// Writes millionths with up to six decimals, trailing zeros trimmed (`3.17`, `-0.5`, `2.0`).
pub(crate) fn push_weight(buf: &mut Vec<u8>, micro: i64) {
    if micro < 0 {
        buf.push(b'-');
    }
    let v = micro.unsigned_abs();
    push_u64(buf, v / 1_000_000);
    buf.push(b'.');
    let mut frac = v % 1_000_000;
    let mut digits = 6;
    while digits > 1 && frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    let mut tmp = [b'0'; 6];
    for slot in tmp[..digits].iter_mut().rev() {
        *slot = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    buf.extend_from_slice(&tmp[..digits]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = Vec::new();
        write(&mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn integers() {
        assert_eq!(text(|b| push_u64(b, 0)), "0");
        assert_eq!(text(|b| push_u64(b, 179)), "179");
        assert_eq!(text(|b| push_u64(b, u64::MAX)), u64::MAX.to_string());
    }

    #[test]
    fn amounts_in_python_float_style() {
        let cases = [
            (455, "4.55"),
            (1250, "12.5"),
            (3000, "30.0"),
            (7, "0.07"),
            (10, "0.1"),
            (123_456_789, "1234567.89"),
        ];
        for (cents, want) in cases {
            assert_eq!(text(|b| push_amount(b, cents)), want, "{cents} cents");
        }
    }

    #[test]
    fn weights_with_at_most_six_decimals() {
        let cases = [
            (3_170_000, "3.17"),
            (-500_000, "-0.5"),
            (11_650_433, "11.650433"),
            (2_000_000, "2.0"),
            (1, "0.000001"),
            (0, "0.0"),
            (-1_200_000_000, "-1200.0"),
        ];
        for (micro, want) in cases {
            assert_eq!(text(|b| push_weight(b, micro)), want, "{micro} millionths");
        }
    }

    #[test]
    fn rows() {
        let customer = customer_part("C1093826151", b'4', b'F');
        let merchant = quoted_part(&["M348934600", "28007", "es_transportation"]);
        assert_eq!(
            text(|b| push_transaction(b, 0, &customer, &merchant, 455, false)),
            "0,'C1093826151','4','F','28007','M348934600','28007','es_transportation',4.55,0\n"
        );
        assert_eq!(
            text(|b| push_transaction(
                b,
                179,
                &with_gender(&customer, b'M'),
                &merchant,
                3000,
                true
            )),
            "179,'C1093826151','4','M','28007','M348934600','28007','es_transportation',30.0,1\n"
        );
        assert_eq!(
            text(|b| push_importance(b, "C1", "M2", -500_000, "es_food", true)),
            "'C1','M2',-0.5,'es_food',1\n"
        );
    }
}
