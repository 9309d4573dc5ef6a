"""The coding rules on common outpatient problems written the way clinicians write them (an
abbreviation, a status after a comma, a side at the end), each with the code a coder assigns
from the April 2026 tables: how many the rules code right, and the misses. The problems and codes
were written from coding practice, not from a dataset, and are not tuned on.

    python bench/common_problems.py --db KB.duckdb [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icd_graph.kb import KnowledgeBase  # noqa: E402
from programs.floor import CANDIDATES, choose  # noqa: E402

PROBLEMS = {
    "HTN": "I10", "Hypertension, well controlled": "I10", "Essential hypertension, uncontrolled": "I10",
    "Hypertension, stage 2": "I10", "Hypertensive heart disease": "I11.9",
    "DM2": "E11.9", "Type 2 diabetes mellitus": "E11.9", "Type 1 diabetes mellitus": "E10.9",
    "Diabetes mellitus type 2 with hyperglycemia": "E11.65", "Diabetic neuropathy": "E11.40",
    "Diabetic retinopathy": "E11.319", "Prediabetes": "R73.03",
    "CKD stage 3a": "N18.31", "Chronic kidney disease stage 3": "N18.30",
    "Hypothyroidism on levothyroxine": "E03.9", "Vitamin D deficiency": "E55.9",
    "Obstructive sleep apnea": "G47.33", "OSA on CPAP": "G47.33",
    "Benign prostatic hyperplasia": "N40.0", "BPH with LUTS": "N40.1",
    "Low back pain": "M54.50", "Chronic low back pain": "M54.50", "Neck pain": "M54.2",
    "Sciatica, left side": "M54.32", "Lumbar radiculopathy": "M54.16", "Shoulder pain, right": "M25.511",
    "Morbid obesity, BMI 42": "E66.01", "Obesity": "E66.9", "Overweight": "E66.3",
    "Tobacco use": "Z72.0", "Nicotine dependence": "F17.200",
    "Generalized anxiety disorder": "F41.1", "Depression": "F32.A",
    "Major depressive disorder, recurrent, moderate": "F33.1", "Insomnia": "G47.00", "ADHD": "F90.9",
    "Hyperlipidemia": "E78.5", "Mixed hyperlipidemia": "E78.2", "Hypercholesterolemia": "E78.00",
    "Atrial fibrillation": "I48.91", "Paroxysmal atrial fibrillation": "I48.0",
    "Coronary artery disease": "I25.10", "Peripheral artery disease": "I73.9", "Varicose veins": "I83.90",
    "Pulmonary embolism": "I26.99",
    "Iron deficiency anemia": "D50.9", "Anemia": "D64.9",
    "Migraine without aura": "G43.009", "Headache": "R51.9", "Peripheral neuropathy": "G62.9",
    "Allergic rhinitis": "J30.9", "Seasonal allergies": "J30.2",
    "Asthma, mild intermittent": "J45.20", "Moderate persistent asthma": "J45.40",
    "COPD": "J44.9", "COPD exacerbation": "J44.1", "Acute bronchitis": "J20.9",
    "Upper respiratory infection": "J06.9", "Acute sinusitis": "J01.90", "Pharyngitis": "J02.9",
    "Pneumonia": "J18.9", "COVID-19": "U07.1", "Otitis media, left ear": "H66.92",
    "Urinary tract infection": "N39.0", "Hematuria": "R31.9", "Kidney stone": "N20.0",
    "Cellulitis of right lower leg": "L03.115", "Eczema": "L30.9", "Psoriasis": "L40.9", "Acne": "L70.9",
    "Gout": "M10.9", "Right knee osteoarthritis": "M17.11", "Osteoarthritis of both knees": "M17.0",
    "Rheumatoid arthritis": "M06.9", "Osteoporosis": "M81.0", "Fibromyalgia": "M79.7",
    "Plantar fasciitis": "M72.2", "Carpal tunnel syndrome, bilateral": "G56.03", "Left ankle sprain": "S93.402A",
    "GERD": "K21.9", "Constipation": "K59.00", "Irritable bowel syndrome": "K58.9", "Hemorrhoids": "K64.9",
    "Fatty liver": "K76.0", "Abdominal pain": "R10.9", "Nausea and vomiting": "R11.2", "Diarrhea": "R19.7",
    "Hypokalemia": "E87.6", "Hyponatremia": "E87.1", "Dehydration": "E86.0",
    "Syncope": "R55", "Dizziness": "R42", "Chest pain": "R07.9", "Shortness of breath": "R06.02",
    "Cough": "R05.9", "Fatigue": "R53.83", "Weight loss": "R63.4",
    "Glaucoma": "H40.9", "Cataract": "H26.9", "Macular degeneration": "H35.30",
    "Long-term use of anticoagulants": "Z79.01", "Long term use of insulin": "Z79.4",
    "Allergy to penicillin": "Z88.0", "Annual physical exam": "Z00.00",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.db.exists():
        sys.exit(f"no knowledge base at {args.db}: python cli.py icd build --db {args.db}")
    misses = {}
    with KnowledgeBase(args.db) as kb:
        for problem, gold in PROBLEMS.items():
            chosen = choose(problem, kb.search(problem, k=CANDIDATES, source="all")).code
            if chosen != gold:
                misses[problem] = {"gold": gold, "coded": chosen}
    right = len(PROBLEMS) - len(misses)
    if args.json:
        print(json.dumps({"problems": len(PROBLEMS), "right": right, "misses": misses}, indent=2))
        return
    print(f"{right} of {len(PROBLEMS)} coded as a coder codes them")
    for problem, miss in misses.items():
        print(f"  {problem!r}: {miss['coded'] or 'no code'} (a coder: {miss['gold']})")


if __name__ == "__main__":
    main()
