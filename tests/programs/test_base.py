from programs.base import naming_evidence

NOTE = "Hyperlipidemia on atorvastatin 40 mg.\nASSESSMENT AND PLAN:\n1. Obesity, BMI 31. Dietitian referral.\n2. HTN, above goal."


def test_a_quote_that_names_the_diagnosis_is_kept():
    assert naming_evidence(NOTE, "Obesity", "Obesity, BMI 31.") == "Obesity, BMI 31."
    assert naming_evidence(NOTE, "Hypertension", "HTN, above goal.") == "HTN, above goal."


def test_a_quote_of_another_line_gives_way_to_the_diagnosis_the_note_writes():
    assert naming_evidence(NOTE, "Obesity", "Hyperlipidemia on atorvastatin 40 mg.") == "Obesity"
    assert naming_evidence(NOTE, "Hyperlipidemia", "Obesity, BMI 31.") == "Hyperlipidemia"
    # a diagnosis neither its quote nor the note names (copied from a demo): nothing to quote
    assert naming_evidence(NOTE, "Gout", "Obesity, BMI 31.") is None
    assert naming_evidence(NOTE, "Morbid obesity", "Obesity, BMI 31.") == "Obesity, BMI 31."
