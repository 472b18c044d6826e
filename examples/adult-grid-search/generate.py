#!/usr/bin/env python3
"""Writes a synthetic stand-in for the UCI "adult" census dataset.

The real dataset cannot be downloaded here, so this script makes one of the
same shape, deterministically: 48,842 rows (adult.data and adult.test
together), the same 14 feature columns with the same kinds of values, and
the income label (<=50K or >50K, about a quarter >50K). The label depends on
the features the way one would expect (education, age, hours, marriage,
capital gains), plus noise, so a model has something to learn.

The file is written in the UCI layout (no header, ", "-separated), so the
real adult.data can replace it unchanged. Pure Python: no packages needed.

    python3 generate.py                 # writes data/adult.data beside this script
    python3 generate.py --rows 1000 --out /tmp/small.data
"""

import argparse
import math
import os
import random

ROWS = 48_842
SEED = 1994  # the year of the census extract the real dataset comes from

WORKCLASS = [("Private", 69.4), ("Self-emp-not-inc", 7.9), ("Local-gov", 6.4), ("?", 5.7),
             ("State-gov", 4.1), ("Self-emp-inc", 3.5), ("Federal-gov", 2.9),
             ("Without-pay", 0.05), ("Never-worked", 0.05)]
EDUCATION = [("Preschool", 1, 0.2), ("1st-4th", 2, 0.5), ("5th-6th", 3, 1.0), ("7th-8th", 4, 2.0),
             ("9th", 5, 1.5), ("10th", 6, 2.8), ("11th", 7, 3.7), ("12th", 8, 1.3),
             ("HS-grad", 9, 32.3), ("Some-college", 10, 22.3), ("Assoc-voc", 11, 4.2),
             ("Assoc-acdm", 12, 3.3), ("Bachelors", 13, 16.4), ("Masters", 14, 5.4),
             ("Prof-school", 15, 1.7), ("Doctorate", 16, 1.2)]
MARITAL = [("Married-civ-spouse", 45.8), ("Never-married", 33.0), ("Divorced", 13.6),
           ("Separated", 3.1), ("Widowed", 3.1), ("Married-spouse-absent", 1.3),
           ("Married-AF-spouse", 0.1)]
OCCUPATION = [("Prof-specialty", 12.6), ("Craft-repair", 12.5), ("Exec-managerial", 12.5),
              ("Adm-clerical", 11.5), ("Sales", 11.3), ("Other-service", 10.1),
              ("Machine-op-inspct", 6.2), ("?", 5.8), ("Transport-moving", 4.8),
              ("Handlers-cleaners", 4.2), ("Farming-fishing", 3.0), ("Tech-support", 3.0),
              ("Protective-serv", 2.0), ("Priv-house-serv", 0.5), ("Armed-Forces", 0.03)]
RACE = [("White", 85.5), ("Black", 9.6), ("Asian-Pac-Islander", 3.1),
        ("Amer-Indian-Eskimo", 1.0), ("Other", 0.8)]
COUNTRY = [("United-States", 89.7), ("Mexico", 2.0), ("?", 1.8), ("Philippines", 0.6),
           ("Germany", 0.4), ("Puerto-Rico", 0.4), ("Canada", 0.4), ("El-Salvador", 0.3),
           ("India", 0.3), ("Cuba", 0.3), ("England", 0.3), ("China", 0.25),
           ("South", 0.2), ("Jamaica", 0.2), ("Italy", 0.2), ("Dominican-Republic", 0.2),
           ("Japan", 0.2), ("Guatemala", 0.2), ("Poland", 0.2), ("Vietnam", 0.2),
           ("Columbia", 0.2), ("Haiti", 0.15), ("Portugal", 0.1), ("Taiwan", 0.1),
           ("Iran", 0.1), ("Greece", 0.1), ("Nicaragua", 0.1), ("Peru", 0.1),
           ("Ecuador", 0.1), ("France", 0.1), ("Ireland", 0.1), ("Hong", 0.05),
           ("Thailand", 0.05), ("Cambodia", 0.05), ("Trinadad&Tobago", 0.05),
           ("Laos", 0.05), ("Yugoslavia", 0.05), ("Outlying-US(Guam-USVI-etc)", 0.05),
           ("Scotland", 0.05), ("Honduras", 0.05), ("Hungary", 0.05),
           ("Holand-Netherlands", 0.01)]
SKILLED = {"Exec-managerial", "Prof-specialty", "Tech-support", "Protective-serv", "Sales"}


def pick(rng, weighted):
    values = [w[0] for w in weighted]
    weights = [w[-1] for w in weighted]
    return rng.choices(values, weights=weights)[0]


def row(rng):
    age = min(90, max(17, int(rng.gauss(38.6, 13.6))))
    workclass = pick(rng, WORKCLASS)
    education, education_num, _ = rng.choices(EDUCATION, weights=[e[2] for e in EDUCATION])[0]
    marital = pick(rng, MARITAL) if age > 21 else rng.choice(["Never-married"] * 9 + ["Married-civ-spouse"])
    occupation = "?" if workclass == "?" else pick(rng, OCCUPATION[:7] + OCCUPATION[8:])
    sex = "Male" if rng.random() < 0.67 else "Female"
    if marital.startswith("Married") and marital != "Married-spouse-absent":
        relationship = "Husband" if sex == "Male" else "Wife"
    else:
        relationship = rng.choice(["Not-in-family", "Own-child", "Unmarried", "Other-relative"])
    race = pick(rng, RACE)
    capital_gain = 0 if rng.random() < 0.917 else int(rng.lognormvariate(8.5, 1.1))
    capital_loss = 0 if rng.random() < 0.953 else int(rng.gauss(1870, 360))
    hours = min(99, max(1, int(rng.gauss(40.4, 12.4))))
    country = pick(rng, COUNTRY)
    fnlwgt = int(rng.lognormvariate(12.0, 0.55))

    logit = (-9.7 + 0.33 * education_num + 0.045 * min(age, 60) + 0.032 * hours
             + (2.1 if relationship in ("Husband", "Wife") else 0.0)
             + (0.7 if occupation in SKILLED else 0.0)
             + (2.5 if capital_gain > 5000 else 0.0) + (0.8 if capital_loss > 1500 else 0.0)
             + (0.3 if sex == "Male" else 0.0) + rng.gauss(0.0, 0.9))
    income = ">50K" if rng.random() < 1.0 / (1.0 + math.exp(-logit)) else "<=50K"
    return [age, workclass, fnlwgt, education, education_num, marital, occupation,
            relationship, race, sex, capital_gain, capital_loss, hours, country, income]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", default=os.path.join(here, "data", "adult.data"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    high = 0
    with open(args.out, "w") as out:
        for _ in range(args.rows):
            values = row(rng)
            high += values[-1] == ">50K"
            out.write(", ".join(str(v) for v in values) + "\n")
    print(f"wrote {args.rows} rows to {args.out} ({100.0 * high / args.rows:.1f}% >50K)")


if __name__ == "__main__":
    main()
