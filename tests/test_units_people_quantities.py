"""Tests for monitor.enrich units, people and quantities: table-driven sentences in uk, ru and en."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from monitor.enrich.people import DATA as PEOPLE_DATA
from monitor.enrich.people import PeopleExtractor
from monitor.enrich.quantities import extract_quantities
from monitor.enrich.units import DATA as UNITS_DATA
from monitor.enrich.units import UnitExtractor, ordinal
from monitor.normalize.text import clean_text

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


@pytest.fixture(scope="module")
def units() -> UnitExtractor:
    return UnitExtractor.load()


@pytest.fixture(scope="module")
def people() -> PeopleExtractor:
    return PeopleExtractor.load()


def _units(extractor: UnitExtractor, raw: str) -> list[tuple[str, str]]:
    text = clean_text(raw)
    return [(unit.id, text[unit.start : unit.end]) for unit in extractor.extract(text)]


def _people(extractor: PeopleExtractor, raw: str) -> list[tuple[str, str]]:
    text = clean_text(raw)
    return [(person.id, text[person.start : person.end]) for person in extractor.extract(text)]


def _quantities(raw: str, lang: str | None = None) -> list[tuple[str, float, str, str]]:
    text = clean_text(raw)
    return [(q.kind, q.value, q.unit, text[q.start : q.end]) for q in extract_quantities(text, lang)]


# ---------------------------------------------------------------------------------------------- units

UNIT_CASES: list[tuple[str, list[tuple[str, str]]]] = [
    # en
    ("The 3rd Separate Assault Brigade said", [("ua-3-assault-brigade", "3rd Separate Assault Brigade")]),
    ("a video of the 3rd Assault Brigade", [("ua-3-assault-brigade", "3rd Assault Brigade")]),
    ("footage released by the 92nd OMBr on Friday", [("ua-92-mechanized-brigade", "92nd OMBr")]),
    ("the 92nd Mechanized Brigade holds", [("ua-92-mechanized-brigade", "92nd Mechanized Brigade")]),
    (
        "the 92nd Ivan Sirko Separate Mechanized Brigade of Ukraine",
        [("ua-92-mechanized-brigade", "92nd Ivan Sirko Separate Mechanized Brigade")],
    ),
    ("soldiers of the 93rd Kholodnyi Yar attacked", [("ua-93-mechanized-brigade", "93rd Kholodnyi Yar")]),
    (
        "the 80th Air Assault Brigade and the 5th Assault Brigade",
        [("ua-80-air-assault-brigade", "80th Air Assault Brigade"), ("ua-5-assault-brigade", "5th Assault Brigade")],
    ),
    (
        "the 92nd and 93rd brigades",
        [("ua-92-mechanized-brigade", "92nd"), ("ua-93-mechanized-brigade", "93rd brigades")],
    ),
    ("Russia's 76th Guards Air Assault Division", [("ru-76-air-assault-division", "76th Guards Air Assault Division")]),
    ("the 58th Army lost ground", [("ru-58-combined-arms-army", "58th Army")]),
    ("the Russian 155th brigade", [("ru-155-marine-brigade", "155th brigade")]),
    ("the 31st brigade", [("unit-31-brigade", "31st brigade")]),  # ua 31 mechanized or ru 31 air assault
    ("the Wagner Group mercenaries and Wagner's chief", [("ru-wagner", "Wagner Group"), ("ru-wagner", "Wagner")]),
    (
        "the Russian Volunteer Corps and the Freedom for Russia Legion",
        [("ua-rdk", "Russian Volunteer Corps"), ("ua-freedom-of-russia-legion", "Freedom for Russia Legion")],
    ),
    ("Storm-Z convicts and Da Vinci Wolves", [("ru-storm-z", "Storm-Z"), ("ua-da-vinci-wolves", "Da Vinci Wolves")]),
    # uk
    ("бійці 3 ОШБр", [("ua-3-assault-brigade", "3 ОШБр")]),
    ("3-тя окрема штурмова бригада відбила штурм", [("ua-3-assault-brigade", "3-тя окрема штурмова бригада")]),
    ("Воїни Третьої штурмової звільнили Андріївку", [("ua-3-assault-brigade", "Третьої штурмової")]),
    ("92-га ОМБр тримає фланги", [("ua-92-mechanized-brigade", "92-га ОМБр")]),
    ("92 ОМБр", [("ua-92-mechanized-brigade", "92 ОМБр")]),
    ("47 окрема механізована бригада", [("ua-47-mechanized-brigade", "47 окрема механізована бригада")]),
    (
        "Бійці 93-ї ОМБр «Холодний Яр» відбили атаки",
        [("ua-93-mechanized-brigade", '93-ї ОМБр "Холодний Яр"')],
    ),
    (
        "нагородив бійців 92-ї бригади імені кошового отамана Івана Сірка",
        [("ua-92-mechanized-brigade", "92-ї бригади імені кошового отамана Івана Сірка")],
    ),
    (
        "перекинули 810-ту бригаду морської піхоти та 155-у ОБрМП",
        [("ru-810-marine-brigade", "810-ту бригаду морської піхоти"), ("ru-155-marine-brigade", "155-у ОБрМП")],
    ),
    (
        "112 бригада ТрО та 126 ОБрТрО",
        [
            ("ua-112-territorial-defense-brigade", "112 бригада ТрО"),
            ("ua-126-territorial-defense-brigade", "126 ОБрТрО"),
        ],
    ),
    ("ПВК «Вагнер» і вагнерівці", [("ru-wagner", 'ПВК "Вагнер"'), ("ru-wagner", "вагнерівці")]),
    ("бійці Російського добровольчого корпусу", [("ua-rdk", "Російського добровольчого корпусу")]),
    # ru
    ("200-я мотострелковая бригада", [("ru-200-motor-rifle-brigade", "200-я мотострелковая бригада")]),
    ("92-я бригада", [("ua-92-mechanized-brigade", "92-я бригада")]),
    (
        "части 106-й воздушно-десантной дивизии и 98-й ВДД",
        [("ru-106-airborne-division", "106-й воздушно-десантной дивизии"), ("ru-98-airborne-division", "98-й ВДД")],
    ),
    ("1009-й мсп", [("ru-1009-motor-rifle-regiment", "1009-й мсп")]),
    ("ЧВК «Вагнер»", [("ru-wagner", 'ЧВК "Вагнер"')]),
    (
        "Бойцы РДК и Легиона «Свобода России»",
        [("ua-rdk", "РДК"), ("ua-freedom-of-russia-legion", 'Легиона "Свобода России"')],
    ),
    ("бойцы Ахмата", [("ru-akhmat", "Ахмата")]),
]

UNIT_NEGATIVES = [
    "He lives on 92nd Street near 3rd Avenue.",  # streets
    "Він живе на вулиці Героїв 93-ї бригади.",  # a street named after a brigade
    "Russia moved 3 brigades; Україна сформувала 3 бригади та 3 окремі бригади.",  # counts, not units
    "In 2023 Mechanized Brigade commanders met.",  # a year is no unit number
    "500 МСП отримали кредити.",  # МСП needs an ordinal ("small and medium business")
    "рдк у нижньому регістрі",  # РДК matches only in capitals
    "the Sea of Azov and a kraken",  # Sea of Azov; kraken lowercase
    "Ахмат Кадыров был президентом Чечни.",  # the person, not the unit
    "On 24 February 2022 Russia invaded.",
]


@pytest.mark.parametrize(("text", "expected"), UNIT_CASES)
def test_units(units: UnitExtractor, text: str, expected: list[tuple[str, str]]) -> None:
    """Each sentence yields exactly the expected unit ids, with spans over the normalized text."""
    assert _units(units, text) == expected


@pytest.mark.parametrize("text", UNIT_NEGATIVES)
def test_unit_negatives(units: UnitExtractor, text: str) -> None:
    """Streets, counts, years, lowercase abbreviations and look-alike names are not units."""
    assert _units(units, text) == []


def test_unit_names_are_canonical(units: UnitExtractor) -> None:
    """A known unit carries its curated name; a built id carries a built name."""
    text = "92-я бригада и 31-я бригада"
    found = units.extract(text)
    assert [unit.name for unit in found] == ['92nd Separate Mechanized Brigade "Ivan Sirko"', "31st Brigade"]


def test_ordinal() -> None:
    """English ordinals for unit names, including the teens."""
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 92, 111, 112, 153)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "92nd", "111th", "112th", "153rd",
    ]  # fmt: skip


def test_unit_data_is_consistent() -> None:
    """Known-unit ids follow <side>-<n>-<spec>-<type> and are unique, named formations are unique."""
    data = yaml.safe_load(UNITS_DATA.read_text(encoding="utf-8"))
    ids = [entry["id"] for entry in data["known"]] + [entry["id"] for entry in data["named"]]
    assert len(ids) == len(set(ids))
    for entry in data["known"]:
        assert entry["id"] == f"{entry['country']}-{entry['number']}-{entry['specs'][0]}-{entry['type']}", entry
        assert entry["name"].startswith(ordinal(entry["number"]) + " "), entry
    for abbreviation in data["abbreviations"].values():
        assert abbreviation.get("spec") is None or abbreviation["spec"] in data["specs"], abbreviation


# ---------------------------------------------------------------------------------------------- people

PEOPLE_CASES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Зеленський заявив про контрнаступ", [("volodymyr-zelensky", "Зеленський")]),
    ("Указ Зеленського набув чинності", [("volodymyr-zelensky", "Зеленського")]),
    (
        "зустріч Володимира Зеленського з Байденом",
        [("volodymyr-zelensky", "Володимира Зеленського"), ("joe-biden", "Байденом")],
    ),
    (
        "Zelenskyy's visit and Zelensky's speech",
        [("volodymyr-zelensky", "Zelenskyy"), ("volodymyr-zelensky", "Zelensky")],
    ),
    ("Сирському доповіли про ситуацію", [("oleksandr-syrskyi", "Сирському")]),
    ("General Oleksandr Syrskyi said", [("oleksandr-syrskyi", "Oleksandr Syrskyi")]),
    ("Главком Залужный и генерал Залужного", [("valerii-zaluzhnyi", "Залужный"), ("valerii-zaluzhnyi", "Залужного")]),
    (
        "Пригожина критикували, а Пригожиным були незадоволені",
        [("yevgeny-prigozhin", "Пригожина"), ("yevgeny-prigozhin", "Пригожиным")],
    ),
    ("Prigozhin, also spelled Prihozhyn", [("yevgeny-prigozhin", "Prigozhin"), ("yevgeny-prigozhin", "Prihozhyn")]),
    (
        "Шойгу і Герасимов прибули; Путіну доповіли",
        [("sergei-shoigu", "Шойгу"), ("valery-gerasimov", "Герасимов"), ("vladimir-putin", "Путіну")],
    ),
    ("встреча с Путиным и Герасимовым", [("vladimir-putin", "Путиным"), ("valery-gerasimov", "Герасимовым")]),
    ("В. Путин подписал указ", [("vladimir-putin", "В. Путин")]),
    ("путін знову погрожує", [("vladimir-putin", "путін")]),  # written lowercase on purpose
    ("Hanna Maliar said, and Malyar added", [("hanna-maliar", "Hanna Maliar"), ("hanna-maliar", "Malyar")]),
    ("Заступниця міністра Маляр повідомила", [("hanna-maliar", "Маляр")]),
    ("Маляр заявила, що ЗСУ просуваються.", [("hanna-maliar", "Маляр")]),
    ("Про це повідомила Маляр.", [("hanna-maliar", "Маляр")]),
    (
        "Речник Череватий розповів про Буданова та Умєрова",
        [("serhii-cherevatyi", "Череватий"), ("kyrylo-budanov", "Буданова"), ("rustem-umerov", "Умєрова")],
    ),
    ("Резнікову і Подоляку", [("oleksii-reznikov", "Резнікову"), ("mykhailo-podolyak", "Подоляку")]),
    ("Кадиров заявив", [("ramzan-kadyrov", "Кадиров")]),
    ("Лукашенка запросили", [("alexander-lukashenko", "Лукашенка")]),
    (
        "Денис Прокопенко і знову Прокопенко",
        [("denys-prokopenko", "Денис Прокопенко"), ("denys-prokopenko", "Прокопенко")],
    ),
    ("General Alexander Tarnavskji said", [("oleksandr-tarnavskyi", "Alexander Tarnavskji")]),
    ("Песков отказался комментировать", [("dmitry-peskov", "Песков")]),
    (
        "Ursula von der Leyen and фон дер Ляєн",
        [("ursula-von-der-leyen", "Ursula von der Leyen"), ("ursula-von-der-leyen", "фон дер Ляєн")],
    ),
]

PEOPLE_NEGATIVES = [
    "маляр фарбує стіни",  # uk "painter"
    "Маляр пофарбував стіну.",  # sentence-initial, masculine verb, no context
    "сальдо торгового балансу. Сальдо погіршилось.",  # "balance"
    "Ігнат пішов до школи.",  # a first name
    "череватий чоловік",  # "pot-bellied"
    "в районе песков",  # "of sands"
    "Ахмат Кадыров был президентом Чечни.",  # Ramzan's father
    "Прокопенко сказав, що Захарова прийде.",  # common surnames without a first name
]


@pytest.mark.parametrize(("text", "expected"), PEOPLE_CASES)
def test_people(people: PeopleExtractor, text: str, expected: list[tuple[str, str]]) -> None:
    """Each sentence yields exactly the expected people, with case forms and first names in the span."""
    assert _people(people, text) == expected


@pytest.mark.parametrize("text", PEOPLE_NEGATIVES)
def test_people_negatives(people: PeopleExtractor, text: str) -> None:
    """Surnames that are also common words or common surnames need capitals and context."""
    assert _people(people, text) == []


def test_every_surname_variant_matches(people: PeopleExtractor) -> None:
    """Every listed surname variant, after one of the person's first names, is found as that person."""
    data = yaml.safe_load(PEOPLE_DATA.read_text(encoding="utf-8"))
    for person in data["people"]:
        first = person["first"][0]
        for surname in person["surnames"]:
            name = surname.strip("\"'")
            text = f"Вчора {first} {name} виступив."
            found = people.extract(text)
            assert [(p.id, text[p.start : p.end]) for p in found] == [(person["id"], f"{first} {name}")], text


def test_people_data_is_consistent(people: PeopleExtractor) -> None:
    """Person ids are unique slugs of the display name and ambiguous/caps forms are listed surnames."""
    data = yaml.safe_load(PEOPLE_DATA.read_text(encoding="utf-8"))
    assert len(people.ids) == len(data["people"]) >= 40
    for person in data["people"]:
        assert re.fullmatch(r"[a-z]+(?:-[a-z]+)+", person["id"]), person["id"]
        assert person["id"] == person["name"].lower().replace(" ", "-"), person["id"]
        for key in ("ambiguous", "caps"):
            assert set(person.get(key, [])) <= set(person["surnames"]), (person["id"], key)


# ---------------------------------------------------------------------------------------------- quantities

QUANTITY_CASES: list[tuple[str, str | None, list[tuple[str, float, str, str]]]] = [
    ("Russia had lost 3,574 tanks", "en", [("losses", 3574, "tanks", "3,574 tanks")]),
    (
        "Russia carried out 30 air strikes and 712 artillery strikes on Avdiivka",
        "en",
        [
            ("strikes", 30, "air_strikes", "30 air strikes"),
            ("strikes", 712, "artillery_strikes", "712 artillery strikes"),
        ],
    ),
    ("They repelled 24 Russian attacks near Ivanivske", "en", [("attacks", 24, "attacks", "24 Russian attacks")]),
    ("24 attacks repelled", "en", [("attacks", 24, "attacks", "24 attacks")]),
    ("Russia had lost about 169,170 personnel", "en", [("losses", 169170, "personnel", "169,170 personnel")]),
    (
        "about 500 soldiers killed and 1000 wounded",
        "en",
        [
            ("casualties", 500, "killed", "500 soldiers"),
            ("casualties", 1000, "wounded", "1000 wounded"),
        ],
    ),
    ("At least 4 killed in Russian drone attacks on Kharkiv", "en", [("casualties", 4, "killed", "4 killed")]),
    (
        "The strike killed at least 14 people and injured 30.",
        "en",
        [
            ("casualties", 14, "killed", "14 people"),
            ("casualties", 30, "wounded", "30"),
        ],
    ),
    ("4 civilians were killed", "en", [("casualties", 4, "civilians_killed", "4 civilians")]),
    ("two tanks were destroyed", "en", [("losses", 2, "tanks", "two tanks")]),
    ("Ukraine received 31 tanks", "en", [("count", 31, "tanks", "31 tanks")]),
    (
        "forces captured 3 Russian tanks and took 15 prisoners",
        "en",
        [
            ("captured", 3, "tanks", "3 Russian tanks"),
            ("captured", 15, "prisoners", "15 prisoners"),
        ],
    ),
    ("one million artillery shells", "en", [("count", 1_000_000, "shells", "one million artillery shells")]),
    ("the 3.5 thousand troops", "en", [("count", 3500, "personnel", "3.5 thousand troops")]),
    ("знищено понад 100 окупантів", "uk", [("losses", 100, "personnel", "100 окупантів")]),
    ("понад 100 окупантів", "uk", [("losses", 100, "personnel", "100 окупантів")]),
    ("2 літаки", "uk", [("count", 2, "aircraft", "2 літаки")]),
    ("мінус 15 танків", "uk", [("losses", 15, "tanks", "15 танків")]),
    ("знищено 7 БпЛА", "uk", [("losses", 7, "uav", "7 БпЛА")]),
    ("захоплено 3 танки", "uk", [("captured", 3, "tanks", "3 танки")]),
    ("взяли в полон 15 окупантів", "uk", [("captured", 15, "prisoners", "15 окупантів")]),
    ("Минулої доби відбулося 95 бойових зіткнень", "uk", [("attacks", 95, "clashes", "95 бойових зіткнень")]),
    (
        "Ворог завдав 5 ракетних ударів та 30 авіаударів, здійснив 40 обстрілів з РСЗВ",
        "uk",
        [
            ("strikes", 5, "missile_strikes", "5 ракетних ударів"),
            ("strikes", 30, "air_strikes", "30 авіаударів"),
            ("strikes", 40, "mlrs_strikes", "40 обстрілів з РСЗВ"),
        ],
    ),
    (
        "Ворог втратив 1 190 осіб, 19 танків, 31 ББМ та 25 артсистем.",
        "uk",
        [
            ("losses", 1190, "personnel", "1 190 осіб"),
            ("losses", 19, "tanks", "19 танків"),
            ("losses", 31, "afv", "31 ББМ"),
            ("losses", 25, "artillery_systems", "25 артсистем"),
        ],
    ),
    ("Знищено 1,5 тис. окупантів", "uk", [("losses", 1500, "personnel", "1,5 тис. окупантів")]),
    (
        "Унаслідок удару загинули 2 цивільних, 7 людей поранено.",
        "uk",
        [
            ("casualties", 2, "civilians_killed", "2 цивільних"),
            ("casualties", 7, "wounded", "7 людей"),
        ],
    ),
    ("Сили ППО збили 30 шахедів із 35.", "uk", [("losses", 30, "uav", "30 шахедів")]),
    ("уничтожено 12 танков", "ru", [("losses", 12, "tanks", "12 танков")]),
    (
        "Силы ПВО сбили 25 беспилотников и 2 крылатые ракеты.",
        "ru",
        [
            ("losses", 25, "uav", "25 беспилотников"),
            ("losses", 2, "cruise_missiles", "2 крылатые ракеты"),
        ],
    ),
    (
        "В результате обстрела погибли 3 человека, еще 12 ранены.",
        "ru",
        [
            ("casualties", 3, "killed", "3 человека"),
            ("casualties", 12, "wounded", "12 ранены"),
        ],
    ),
    ("уничтожены 10-15 танков", "ru", [("losses", 10, "tanks", "10-15 танков")]),
    ("сбиты 2 Су-34", "ru", [("losses", 2, "aircraft", "2 Су-34")]),
]

QUANTITY_NEGATIVES = [
    "On 24th March 2023 the 394th day began.",  # ordinals and a date
    "з 24.02.22 по 23.11.23",  # dates
    "In 2023 tanks rolled in; since 2022 drones flew.",  # years after a preposition
    "the 92nd brigade, 92 ОМБр and 3 бригади",  # unit numbers
    "Call +38 044 123 45 67 at 10:30.",  # phone number and time
    "95% of residents left; 50 % of tanks",  # percentages
    "16,200 Ukrainian children who have been deported",  # not a casualty claim
    "a 1,000-kilometer front line six kilometers west",  # measures
    "Су-34 и Т-72 на параде",  # model numbers
    "dozens of drones and hundreds of tanks",  # vague amounts
]

GS_UK = """Загальні бойові втрати противника з 24.02.22 по 23.11.23 орієнтовно склали:
особового складу ‒ близько 317860 (+1190) осіб ліквідовано
танків ‒ 5408 (+19) од
бойових броньованих машин ‒ 10120 (+31) од
артилерійських систем ‒ 7651 (+25) од
РСЗВ ‒ 888 (+2) од
засоби ППО ‒ 578 (+1) од
літаків ‒ 323 (+0) од
гелікоптерів ‒ 324 (+0) од
БПЛА оперативно-тактичного рівня ‒ 5798 (+26)
крилаті ракети ‒ 1574 (+0)
кораблі / катери ‒ 22 (+0) од
підводні човни ‒ 1 (+0) од
автомобільна техніка та автоцистерни ‒ 10068 (+38) од
спеціальна техніка ‒ 1097 (+3)"""

GS_EN = (
    "The total combat losses of the enemy from 24.02.22 to 23.11.23 were approximately: personnel ‒ about 317,860 "
    "(+1,190) persons, tanks ‒ 5,408 (+19), APV ‒ 10,120 (+31), artillery systems – 7,651 (+25), MLRS – 888 (+2), "
    "Anti-aircraft warfare systems ‒ 578 (+1), aircraft – 323 (+0), helicopters – 324 (+0), UAV operational-tactical "
    "level – 5,798 (+26), cruise missiles ‒ 1,574 (+0), warships / boats ‒ 22 (+0), submarines - 1 (+0), vehicles "
    "and fuel tanks – 10,068 (+38), special equipment ‒ 1,097 (+3)."
)

GS_EXPECTED = {  # unit -> (total, daily)
    "personnel": (317860, 1190),
    "tanks": (5408, 19),
    "afv": (10120, 31),
    "artillery_systems": (7651, 25),
    "mlrs": (888, 2),
    "air_defense": (578, 1),
    "aircraft": (323, 0),
    "helicopters": (324, 0),
    "uav": (5798, 26),
    "cruise_missiles": (1574, 0),
    "ships": (22, 0),
    "submarines": (1, 0),
    "vehicles": (10068, 38),
    "special_equipment": (1097, 3),
}


@pytest.mark.parametrize(("text", "lang", "expected"), QUANTITY_CASES)
def test_quantities(text: str, lang: str | None, expected: list[tuple[str, float, str, str]]) -> None:
    """Each sentence yields exactly the expected (kind, value, unit, span) claims."""
    assert _quantities(text, lang) == expected


@pytest.mark.parametrize("lang", ["en", "uk", "ru", None])
@pytest.mark.parametrize("text", QUANTITY_NEGATIVES)
def test_quantity_negatives(text: str, lang: str | None) -> None:
    """Dates, years, ordinals, unit numbers, phones, times, percentages and measures are not claims."""
    assert _quantities(text, lang) == []


@pytest.mark.parametrize(("report", "lang"), [(GS_UK, "uk"), (GS_EN, "en"), (GS_UK, None)])
def test_general_staff_report(report: str, lang: str | None) -> None:
    """The General Staff's daily report gives every category's total (losses) and increment (losses_daily)."""
    text = clean_text(report)
    found = extract_quantities(text, lang)
    totals = {q.unit: q.value for q in found if q.kind == "losses"}
    daily = {q.unit: q.value for q in found if q.kind == "losses_daily"}
    assert len(found) == 2 * len(GS_EXPECTED)
    assert totals == {unit: total for unit, (total, _) in GS_EXPECTED.items()}
    assert daily == {unit: increment for unit, (_, increment) in GS_EXPECTED.items()}
    for q in found:  # a total's span runs from the noun to the number; an increment's is "+19"
        span = text[q.start : q.end]
        digits = re.search(r"\d[\d ,]*$", span)
        assert digits is not None and float(re.sub(r"\D", "", digits.group())) == q.value, span
        assert span.startswith("+") == (q.kind == "losses_daily"), span


def test_general_staff_report_on_one_line() -> None:
    """The report written on one line, items separated by commas, gives the same totals."""
    one_line = clean_text(GS_UK.replace("\n", ", ").replace("склали:, ", "склали: "))
    totals = {q.unit: q.value for q in extract_quantities(one_line, "uk") if q.kind == "losses"}
    assert totals == {unit: total for unit, (total, _) in GS_EXPECTED.items()}


def test_list_items_take_their_own_paragraphs_loss_sense() -> None:
    """A list after a losses header is losses; the same list in a later paragraph without one is a count,
    and a long list keeps reading every item (each paragraph's loss word is looked up once)."""
    listed = "танків ‒ 5408 (+19) од\nББМ ‒ 10 450 (+27) од\n"
    text = f"Загальні бойові втрати противника склали:\n{listed}\nНа складах зберігається:\n{listed}"
    found = [(q.kind, q.value, q.unit) for q in extract_quantities(text, "uk") if not q.kind.endswith("_daily")]
    assert found == [
        ("losses", 5408, "tanks"),
        ("losses", 10450, "afv"),
        ("count", 5408, "tanks"),
        ("count", 10450, "afv"),
    ]
    long_list = "Загальні бойові втрати противника склали:\n" + "танків ‒ 5408 (+19) од\n" * 2000
    quantities = extract_quantities(long_list, "uk")
    assert [q.kind for q in quantities].count("losses") == 2000


def test_spans_index_the_normalized_text(units: UnitExtractor, people: PeopleExtractor) -> None:
    """Spans are offsets into Item.text after clean_text (NBSP, typographic quotes and dashes folded)."""
    raw = "Бійці\u00a093‑ї ОМБр «Холодний Яр» — Олександр\u00a0Сирський: знищено 3\u00a0574 танки"
    text = clean_text(raw)
    assert text.startswith('Бійці 93-ї ОМБр "Холодний Яр" - Олександр Сирський')
    assert [text[u.start : u.end] for u in units.extract(text)] == ['93-ї ОМБр "Холодний Яр"']
    assert [text[p.start : p.end] for p in people.extract(text)] == ["Олександр Сирський"]
    assert [(q.value, text[q.start : q.end]) for q in extract_quantities(text)] == [(3574, "3 574 танки")]


def test_empty_and_plain_text(units: UnitExtractor, people: PeopleExtractor) -> None:
    """Texts without entities give empty lists quickly."""
    for text in ("", "   ", "Nothing to see here.", "Нічого цікавого."):
        assert units.extract(text) == []
        assert people.extract(text) == []
        assert extract_quantities(text) == []


# ---------------------------------------------------------------------------------------------- seeds and speed


@pytest.mark.skipif(not SEEDS.is_dir(), reason="seed articles are not present")
def test_seed_articles(units: UnitExtractor, people: PeopleExtractor) -> None:
    """The seed articles yield their brigades, commanders and the General Staff's figures."""
    texts = {path.name[:3]: clean_text(path.read_text(encoding="utf-8")) for path in sorted(SEEDS.glob("*.txt"))}
    unit_ids = {key: {u.id for u in units.extract(text)} for key, text in texts.items()}
    person_ids = {key: {p.id for p in people.extract(text)} for key, text in texts.items()}
    assert unit_ids["000"] == {"ua-3-assault-brigade"}
    assert unit_ids["003"] == {"ua-92-mechanized-brigade"}
    assert unit_ids["004"] == {"ru-wagner", "ua-rdk", "ua-freedom-of-russia-legion"}
    assert person_ids["000"] == {"oleksandr-tarnavskyi", "maksym-zhorin"}
    assert person_ids["004"] >= {"hanna-maliar", "yevgeny-prigozhin", "dmitry-peskov", "mykhailo-podolyak"}
    losses = {q.unit: q.value for q in extract_quantities(texts["003"], "en") if q.kind == "losses"}
    assert losses["personnel"] == 169170 and losses["tanks"] == 3574 and losses["special_equipment"] == 277
    assert len(losses) == 13


def test_extractors_built_from_their_data_files() -> None:
    """Extractors built straight from units.yaml and people.yaml find a post's units, people and claims
    (their speed is measured by bench/normalize.py, not asserted here)."""
    unit_extractor = UnitExtractor(yaml.safe_load(UNITS_DATA.read_text(encoding="utf-8")))
    people_extractor = PeopleExtractor(yaml.safe_load(PEOPLE_DATA.read_text(encoding="utf-8")))
    post = clean_text(
        "Бійці 3-ї окремої штурмової бригади відбили 5 атак, знищено 7 БпЛА та 2 танки. Олександр Сирський "
        "заявив, що ворог втратив понад 100 окупантів. Ганна Маляр сказала, що 92-га ОМБр тримає фланги."
    )
    assert [u.id for u in unit_extractor.extract(post)] == ["ua-3-assault-brigade", "ua-92-mechanized-brigade"]
    assert [p.id for p in people_extractor.extract(post)] == ["oleksandr-syrskyi", "hanna-maliar"]
    assert [(q.kind, q.value, q.unit) for q in extract_quantities(post, "uk")] == [
        ("attacks", 5, "attacks"),
        ("losses", 7, "uav"),
        ("losses", 2, "tanks"),
        ("losses", 100, "personnel"),
    ]
