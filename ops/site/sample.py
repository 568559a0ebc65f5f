"""A generated course site of real size and shape, for the tests and bench/site.py.

What a years-old GitHub-Pages-style course site looks like (issue 14), made in a few
seconds, never committed: a ``_config.yml`` with many empty values and comments, a tab
after a value, an anchor and its alias, ``remote_theme`` (a local stand-in for the theme in
``_themes/minimal-mistakes/``, with its own ``_data`` UI strings and Sass), plugins
(jekyll-paginate, -sitemap, -gist, -feed, jemoji, -include-cache), ``defaults`` per
collection and five collections, a MathJax include from a CDN, a Gemfile naming
github-pages; ``_data/authors.yml`` as a mapping of people; previous semesters under
``semesters/<id>/``: pre-built static HTML built under their own baseurl (no front matter),
one folder without an index page; and PDFs, PPTX and images under ``assets/``, most of the
bytes. jemoji has no Debian package: a build needs ``website_skip_plugins: [jemoji]``; the
folder without index is a broken link, accepted with ``website_link_check_allow``
(:data:`ALLOW`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

BASEURL = "/cs236781"
THEME = "minimal-mistakes"
COLLECTIONS = ("lectures", "tutorials", "assignments", "projects", "exams")
#: pre-built semesters (static HTML) and the one folder without an index page
STATIC_SEMESTERS = ("2023-winter", "2024-spring", "2024-winter")
NO_INDEX = "2019-spring"
SKIP_PLUGINS = ["jemoji"]
ALLOW = [f"{BASEURL}/semesters/{NO_INDEX}/"]
MATHJAX = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"


@dataclass
class Made:
    source: Path
    files: int
    bytes: int
    #: a page of the current semester and one of an archived semester (URL paths)
    current_page: str
    archived_page: str
    #: the source file a one-page change edits, and the text the page then shows
    one_page: Path


CONFIG = """\
# Site settings -- a course site of many years, GitHub Pages style.
# Comments everywhere, many keys left empty on purpose (as the theme's template has them).
locale                   : "en-US"
title                    : "Deep Learning on Computational Accelerators"
title_separator          : "-"
subtitle                 : # the theme shows it under the title
name                     : &staff "CS236781 staff"
description              : "Tutorials, lectures and assignments of the course."
url                      : # the base hostname & protocol for your site
baseurl                  : "/cs236781" # the subpath of your site
repository               : # GitHub username/repo-name
teaser                   : # path of fallback teaser image
logo                     : # path of logo image to display in the masthead
masthead_title           : # overrides the website title displayed in the masthead
breadcrumbs              : false # true, false (default)
words_per_minute         :\t200
comments:
  provider               : # false (default), "disqus", "discourse", "facebook"
  disqus:
    shortname            :
reCaptcha:
  siteKey                :
  secret                 :
atom_feed:
  path                   : # blank (default) uses feed.xml
search                   : # true, false (default)
search_full_content      : # true, false (default)
search_provider          : # lunr (default), algolia, google
google_site_verification :
bing_site_verification   :
yandex_site_verification :
naver_site_verification  :
twitter:
  username               :
facebook:
  username               :
  app_id                 :
  publisher              :
og_image                 : # Open Graph/Twitter default site image
social:
  type                   : # Person or Organization (defaults to Person)
  name                   : *staff
  links                  : # An array of links to social media profiles
analytics:
  provider               : false # false (default), "google", "google-universal"
  google:
    tracking_id          :
    anonymize_ip         : # true, false (default)
author:
  name                   : *staff
  avatar                 : # path of avatar image
  bio                    : "The course staff."
  location               : "Haifa"
  email                  :
footer:
  links:
    - label: "GitHub"
      icon: "fab fa-fw fa-github"
      url: # left empty
remote_theme             : "mmistakes/minimal-mistakes@4.24.0"
minimal_mistakes_skin    : "default" # "air", "aqua", "contrast", "dark", "dirt"
markdown: kramdown
highlighter: rouge
lsi: false
excerpt_separator: "\\n\\n"
incremental: false
kramdown:
  input: GFM
  hard_wrap: false
  auto_ids: true
  footnote_nr: 1
  entity_output: as_char
  toc_levels: 1..6
  smart_quotes: lsquo,rsquo,ldquo,rdquo
  enable_coderay: false
sass:
  sass_dir: _sass
  style: compressed
permalink: /:categories/:title/
paginate: 5 # amount of posts to show
paginate_path: /page:num/
timezone: Asia/Jerusalem
gist:
  noscript: false
include:
  - _pages
exclude:
  - Gemfile
  - Gemfile.lock
  - README.md
  - vendor
plugins:
  - jekyll-paginate
  - jekyll-sitemap
  - jekyll-gist
  - jekyll-feed
  - jemoji
  - jekyll-include-cache
whitelist:
  - jekyll-paginate
  - jekyll-sitemap
  - jekyll-gist
  - jekyll-feed
  - jemoji
  - jekyll-include-cache
collections_defaults: &item_defaults
  layout: single
  author_profile: false
  share: false
collections:
COLLECTIONS_HERE
defaults:
  - scope:
      path: ""
    values:
      layout: single
      author_profile: true
DEFAULTS_HERE
"""

THEME_FILES = {
    "_layouts/default.html": """\
<!doctype html>
<html lang="{{ site.locale | slice: 0,2 | default: "en" }}">
<head>
{% include head.html %}
</head>
<body class="layout--{{ page.layout | default: layout.layout }}">
{% include masthead.html %}
<div class="initial-content">{{ content }}</div>
<div id="footer" class="page__footer">{% include footer.html %}</div>
{% include scripts.html %}
</body>
</html>
""",
    "_layouts/single.html": """\
---
layout: default
---
<article class="page">
  <h1 class="page__title">{{ page.title | default: site.title | escape }}</h1>
  <section class="page__content">{{ content }}</section>
  <p class="page__meta">{{ site.data.ui-text[site.locale].meta_label | default: "Updated" }}</p>
</article>
""",
    "_layouts/home.html": """\
---
layout: default
---
<h1>{{ site.title | escape }}</h1>
{{ content }}
<ul class="posts">
{% for post in paginator.posts %}
<li><a href="{{ post.url | relative_url }}">{{ post.title }}</a></li>
{% endfor %}</ul>
{% if paginator.next_page_path %}
<a href="{{ paginator.next_page_path | relative_url }}">older</a>
{% endif %}
{% if paginator.previous_page_path %}
<a href="{{ paginator.previous_page_path | relative_url }}">newer</a>
{% endif %}
""",
    "_includes/head.html": """\
<meta charset="utf-8">
<title>{{ page.title | default: site.title | escape }}</title>
<link rel="stylesheet" href="{{ '/assets/css/main.css' | relative_url }}">
{% if page.mathjax or layout.mathjax or site.mathjax %}{% include mathjax.html %}{% endif %}
""",
    "_includes/masthead.html": """\
<div class="masthead"><a class="site-title" href="{{ '/' | relative_url }}">{{ site.title }}</a>
{% for link in site.data.navigation.main %}
<a href="{{ link.url | relative_url }}">{{ link.title }}</a>
{% endfor %}
</div>
""",
    "_includes/footer.html": "<p>the theme's footer (the site overrides it)</p>\n",
    "_includes/scripts.html":
        "<script src=\"{{ '/assets/js/main.min.js' | relative_url }}\"></script>\n",
    "_data/ui-text.yml": "---\nen-US:\n  meta_label: \"Updated:\"\n  skip_links: \"Skip links\"\n"
                         "he-IL:\n  meta_label: \"עודכן:\"\n",
    "_sass/minimal-mistakes.scss": "@import \"minimal-mistakes/variables\";\n"
                                   "body { color: $text-color; }\n",
    "_sass/minimal-mistakes/_variables.scss": "$text-color: #222 !default;\n",
    "assets/css/main.scss": "---\n# Only the main Sass file needs front matter\n---\n"
                            "@import \"minimal-mistakes\";\n",
    "assets/js/main.min.js": "/* the theme's script */\n",
}


def _bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def _static_page(sem: str, i: int, n: int) -> str:
    base = f"{BASEURL}/semesters/{sem}"
    nxt = f"{base}/lectures/lecture{(i + 1) % n:03d}/"
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{sem} lecture {i}"
            f"</title><link rel=\"stylesheet\" href=\"{base}/assets/css/main.css\"></head>\n"
            f"<body><nav><a href=\"{base}/\">{sem}</a> <a href=\"{nxt}\">next</a> "
            f"<a href=\"{BASEURL}/\">current semester</a></nav>\n"
            f"<h1>Lecture {i} ({sem})</h1>\n"
            f"<p><a href=\"{base}/assets/slides/lecture{i % 20:02d}.pdf\">slides</a>"
            f" <img src=\"../../assets/img/fig{i % 40:02d}.png\" alt=\"\"></p>\n"
            + "<p>" + ("Backpropagation through a computational graph. " * 40) + "</p>\n"
            "</body></html>\n")


def make(dest: Path, *, files: int = 3000, total_bytes: int = 300_000_000,
         seed: int = 14) -> Made:
    """Write the site into ``dest`` (a new directory): about ``files`` files and
    ``total_bytes`` bytes."""
    rng = random.Random(seed)
    src = dest
    src.mkdir(parents=True)
    written = {"files": 0, "bytes": 0}

    def put(rel: str, data: str | bytes) -> Path:
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        raw = data.encode() if isinstance(data, str) else data
        p.write_bytes(raw)
        written["files"] += 1
        written["bytes"] += len(raw)
        return p

    colls = "\n".join(f"  {c}:\n    output: true\n    permalink: /:collection/:path/"
                      for c in COLLECTIONS)
    defaults = "\n".join(f"  - scope:\n      path: \"\"\n      type: {c}\n    values:\n"
                         f"      <<: *item_defaults\n      mathjax: true" for c in COLLECTIONS)
    put("_config.yml", CONFIG.replace("COLLECTIONS_HERE", colls)
        .replace("DEFAULTS_HERE", defaults))
    put("Gemfile", 'source "https://rubygems.org"\ngem "github-pages", group: :jekyll_plugins\n'
        'group :jekyll_plugins do\n  gem "jekyll-include-cache"\n  gem "jemoji"\nend\n')
    put("README.md", "The course site (excluded from the build).\n")
    for rel, text in THEME_FILES.items():
        put(f"_themes/{THEME}/{rel}", text)
    put("_includes/footer.html", "<p class=\"site-footer\">CS236781 &middot; "
        "<a href=\"{{ '/semesters/' | relative_url }}\">previous semesters</a></p>\n")
    put("_includes/mathjax.html", f"<script>window.MathJax = {{tex: {{inlineMath: [['$', "
        f"'$']]}}}};</script>\n<script async src=\"{MATHJAX}\"></script>\n")
    put("_includes/course_staff.html", "<ul id=\"course-staff\">{% for a in site.data.authors %}"
        "<li class=\"staff-name\">{{ a[1].name }}</li>{% endfor %}</ul>\n")
    put("_data/authors.yml", "# Minimal Mistakes style: a mapping of people\nchaim:\n"
        "  name: Chaim Baskin\n  bio: Lecturer\n  avatar:\nnoa:\n  name: Noa Levinson\n"
        "  bio: Teaching assistant\n")
    put("_data/navigation.yml", "main:\n" + "".join(
        f"  - title: \"{c.title()}\"\n    url: /{c}/\n" for c in COLLECTIONS)
        + "  - title: \"Semesters\"\n    url: /semesters/\n")
    put("index.html", "---\nlayout: home\ntitle: Home\n---\n<p>Welcome. "
        "{% include course_staff.html %}</p>\n")
    put("_pages/info.md", "---\ntitle: Course info\npermalink: /info/\nmathjax: true\n---\n"
        "The loss is $L = -\\sum_i y_i \\log p_i$.\n\n"
        "{% include_cached course_staff.html %}\n\n{% gist 5555251 %}\n\n"
        "<iframe src=\"https://www.youtube.com/embed/aircAruvnKk\" title=\"video\"></iframe>\n")
    for c in COLLECTIONS:
        put(f"_pages/{c}.md", f"---\ntitle: {c.title()}\npermalink: /{c}/\n---\n"
            f"{{% for item in site.{c} %}}- [{{{{ item.title }}}}]"
            f"({{{{ item.url | relative_url }}}})\n{{% endfor %}}\n")
    put("semesters/index.md", "---\ntitle: Previous semesters\npermalink: /semesters/\n---\n"
        + "".join(f"- [{s}]({{{{ '/semesters/{s}/' | relative_url }}}})\n"
                  for s in (*STATIC_SEMESTERS, NO_INDEX)))
    for i in range(12):
        put(f"_posts/2026-0{1 + i % 9}-{10 + i}-news-{i}.md",
            f"---\ntitle: News {i}\n---\nAnnouncement {i}.\n")

    # the current semester's pages and assets
    pages_per = 40
    one_page = src
    for c in COLLECTIONS:
        for i in range(pages_per):
            body = (f"---\ntitle: \"{c[:-1].title()} {i}\"\n---\n"
                    f"[Slides]({{{{ '/assets/slides/{c}{i % 12:02d}.pdf' | relative_url }}}}) "
                    f"![figure]({{{{ '/assets/img/{c}-{i % 30:02d}.png' | relative_url }}}})\n\n"
                    + ("The gradient of the loss with respect to $W$ is computed by the "
                       "chain rule. " * 30) + "\n")
            p = put(f"_{c}/{c}{i:03d}.md", body)
            if c == "lectures" and i == 7:
                one_page = p

    # previous semesters, pre-built under their own baseurl: no front matter
    per_sem_pages = 250
    for sem in STATIC_SEMESTERS:
        base = f"semesters/{sem}"
        put(f"{base}/index.html", f"<!DOCTYPE html>\n<html><head><title>{sem}</title>"
            f"<link rel=\"stylesheet\" href=\"{BASEURL}/semesters/{sem}/assets/css/main.css\">"
            f"</head><body><h1>{sem}</h1>\n" + "".join(
                f"<a href=\"{BASEURL}/semesters/{sem}/lectures/lecture{i:03d}/\">{i}</a>\n"
                for i in range(per_sem_pages)) + "</body></html>\n")
        put(f"{base}/assets/css/main.css", "body { font-family: serif; }\n")
        for i in range(per_sem_pages):
            put(f"{base}/lectures/lecture{i:03d}/index.html", _static_page(sem, i, per_sem_pages))
        for i in range(40):
            put(f"{base}/assets/img/fig{i:02d}.png", _bytes(rng, 30_000))
        put(f"{base}/_static/theme.css", "/* a Sphinx-style folder: Jekyll would drop it */\n")
    # a semester folder without an index page (only its slides survived)
    for i in range(3):
        put(f"semesters/{NO_INDEX}/slides/lecture{i:02d}.pdf", _bytes(rng, 50_000))

    # the bulk: slides, decks and figures
    left_files = max(files - written["files"] - (3 * 20), 10)
    budget = max(total_bytes - written["bytes"], 1_000_000)
    for sem in STATIC_SEMESTERS:  # each archived semester's slides
        for i in range(20):
            put(f"semesters/{sem}/assets/slides/lecture{i:02d}.pdf",
                _bytes(rng, budget // 12 // 60))
    budget = max(total_bytes - written["bytes"], 1_000_000)
    n_pdf = 12 * len(COLLECTIONS)
    n_img = 30 * len(COLLECTIONS)
    n_pptx = 20
    n_extra = max(left_files - n_pdf - n_img - n_pptx, 0)
    pdf_size = int(budget * 0.6) // n_pdf
    pptx_size = int(budget * 0.2) // n_pptx
    img_size = int(budget * 0.1) // n_img
    extra_size = int(budget * 0.1) // max(n_extra, 1)
    for c in COLLECTIONS:
        for i in range(12):
            put(f"assets/slides/{c}{i:02d}.pdf", b"%PDF-1.5\n" + _bytes(rng, pdf_size))
        for i in range(30):
            put(f"assets/img/{c}-{i:02d}.png", b"\x89PNG\r\n" + _bytes(rng, img_size))
    for i in range(n_pptx):
        put(f"assets/decks/deck{i:02d}.pptx", b"PK\x03\x04" + _bytes(rng, pptx_size))
    for i in range(n_extra):
        put(f"assets/gallery/{i // 100:02d}/photo{i:04d}.jpg", b"\xff\xd8\xff" +
            _bytes(rng, extra_size))
    return Made(src, written["files"], written["bytes"], f"{BASEURL}/lectures/lectures007/",
                f"{BASEURL}/semesters/{STATIC_SEMESTERS[0]}/lectures/lecture001/", one_page)


def change_one_page(made: Made, marker: str) -> None:
    """Edit the one page of :attr:`Made.one_page` so that it shows ``marker``."""
    text = made.one_page.read_text()
    made.one_page.write_text(text.rstrip("\n") + f"\n\nchange-marker:{marker}\n")
