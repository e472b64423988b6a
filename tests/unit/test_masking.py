"""Contact masking: phone numbers and e-mail addresses are masked, dates, prices and ids are not."""

from engine.messaging.masking import mask_data, mask_email, mask_phone, mask_text


def test_masks_the_formats_the_issue_names():
    assert mask_phone("+4915112345678") == "+49 151 ****678"
    assert mask_email("jana@example.com") == "j***@example.com"


def test_masks_contacts_inside_text_and_leaves_the_rest():
    text = "Hallo jana.m@example.com, ruf 0151 1234 5678 an; Kurs am 2026-11-26 um 18:00, 10er Karte 120 EUR"
    out = mask_text(text)
    assert "jana.m@" not in out and "1234 5678" not in out
    assert "2026-11-26" in out and "18:00" in out and "120 EUR" in out
    assert mask_text("01a2172678aa2a9fad8cd4bcf915d352") == "01a2172678aa2a9fad8cd4bcf915d352"


def test_masks_nested_data_but_keeps_keys_and_numbers():
    data = {"trigger": {"from": "+4915112345678", "n": 3}, "steps": [{"recipient": "max@studio.de"}]}
    assert mask_data(data) == {
        "trigger": {"from": "+49 151 ****678", "n": 3},
        "steps": [{"recipient": "m***@studio.de"}],
    }
