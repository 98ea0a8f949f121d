"""Write benchmarks/data/hard_negatives.jsonl: LLM-prompt pairs that embeddings blur.

    .venv/bin/python -m benchmarks.make_hard_negatives

Each hand-written triple (prompt, near-miss, paraphrase) yields one negative pair (label 0:
a different request that a cache must not answer with the stored reply) and one positive
pair (label 1: the same request reworded), tagged with its ``kind``. Deterministic: the
file is committed and is a *test* set -- the match policy is never fitted to it.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "hard_negatives.jsonl"

# (kind, prompt, near-miss that needs a different answer, paraphrase that needs the same answer)
TRIPLES = [
    # numbers
    ("numbers", "What is 15% of 240?", "What is 15% of 340?", "Calculate fifteen percent of 240."),
    ("numbers", "what is 1+1", "what is 1+2", "what does 1 + 1 equal"),
    ("numbers", "Write a haiku with 3 lines about autumn.", "Write a poem with 5 lines about autumn.", "Compose a 3-line haiku about the autumn season."),
    ("numbers", "Give me 5 ideas for a birthday party.", "Give me 10 ideas for a birthday party.", "Suggest five birthday party ideas."),
    ("numbers", "Is 97 a prime number?", "Is 91 a prime number?", "Is the number 97 prime?"),
    ("numbers", "Convert 250 grams of flour to cups.", "Convert 500 grams of flour to cups.", "How many cups is 250 grams of flour?"),
    ("numbers", "What is the square root of 144?", "What is the square root of 169?", "sqrt of 144?"),
    ("numbers", "Summarize this in 50 words: the meeting is moved to Friday.", "Summarize this in 100 words: the meeting is moved to Friday.", "In 50 words, summarize: the meeting is moved to Friday."),
    ("numbers", "How many calories are in 2 eggs?", "How many calories are in 3 eggs?", "Calories in two eggs?"),
    ("numbers", "Split a bill of $84 between 4 people.", "Split a bill of $84 between 6 people.", "How much does each of 4 people pay on an $84 bill?"),
    ("numbers", "What is 12 times 12?", "What is 12 times 13?", "Multiply 12 by 12."),
    ("numbers", "List the top 3 causes of inflation.", "List the top 7 causes of inflation.", "What are the three main causes of inflation?"),
    ("numbers", "What is the 10th Fibonacci number?", "What is the 20th Fibonacci number?", "Give me Fibonacci number 10."),
    ("numbers", "Is a 700 credit score good?", "Is a 600 credit score good?", "Is 700 a good credit score?"),
    ("numbers", "Explain the 80/20 rule.", "Explain the 90/10 rule.", "What is the 80/20 rule?"),
    ("numbers", "How long does it take to boil an egg for 6 minutes soft?", "How long does it take to boil an egg for 12 minutes hard?", "Is 6 minutes enough for a soft boiled egg?"),
    ("numbers", "What's 2 to the power of 10?", "What's 2 to the power of 16?", "Compute 2^10."),
    ("numbers", "Plan a 3 day trip to Rome.", "Plan a 7 day trip to Rome.", "Make me a three-day itinerary for Rome."),
    ("numbers", "What is the interest on $1000 at 5% for 2 years?", "What is the interest on $1000 at 7% for 2 years?", "Compute interest for $1,000 at 5 percent over 2 years."),
    ("numbers", "Write a 500 word essay on climate change.", "Write a 1000 word essay on climate change.", "Essay on climate change, 500 words."),
    # units
    ("units", "How long does it take to walk 5 km?", "How long does it take to walk 5 miles?", "How much time to walk 5 kilometers?"),
    ("units", "Convert 30 degrees Celsius to Fahrenheit.", "Convert 30 degrees Fahrenheit to Celsius.", "What is 30 °C in Fahrenheit?"),
    ("units", "How many calories do I burn running 10 km?", "How many calories do I burn running 10 miles?", "Calories burned in a 10 kilometre run?"),
    ("units", "Is 70 kg a healthy weight for a man 180 cm tall?", "Is 70 lbs a healthy weight for a man 180 cm tall?", "For a 180 cm man, is 70 kilograms healthy?"),
    ("units", "How much is 100 dollars in euros?", "How much is 100 euros in dollars?", "Convert 100 USD to EUR."),
    ("units", "Is 16 GB of RAM enough for video editing?", "Is 16 MB of RAM enough for video editing?", "Is 16GB RAM sufficient for editing videos?"),
    ("units", "How long to cook a chicken at 200 C?", "How long to cook a chicken at 200 F?", "Chicken cooking time at 200 degrees celsius?"),
    ("units", "How long will 2 liters of water last me hiking?", "How long will 2 gallons of water last me hiking?", "Is 2 L of water enough for a day hike?"),
    ("units", "Run 3 miles in 30 minutes: what pace is that?", "Run 3 km in 30 minutes: what pace is that?", "What pace is 3 miles in 30 min?"),
    ("units", "Is 5 hours of sleep enough?", "Is 5 minutes of sleep enough?", "Can I function on five hours of sleep?"),
    ("units", "Convert 12 inches to cm.", "Convert 12 feet to cm.", "How many centimeters are 12 inches?"),
    ("units", "How much protein is in 100 g of chicken?", "How much protein is in 100 oz of chicken?", "Protein content of 100 grams of chicken?"),
    ("units", "What is 60 mph in km/h?", "What is 60 km/h in mph?", "Convert 60 miles per hour to kilometres per hour."),
    # versions
    ("versions", "What's new in Python 3.11?", "What's new in Python 3.12?", "What are the new features in python 3.11?"),
    ("versions", "How do I install Node 18 on Ubuntu?", "How do I install Node 20 on Ubuntu?", "Install Node.js version 18 on Ubuntu"),
    ("versions", "Is Django 4.2 an LTS release?", "Is Django 4.1 an LTS release?", "Django 4.2: is it long-term support?"),
    ("versions", "Breaking changes from React 17 to 18?", "Breaking changes from React 16 to 17?", "What breaks when upgrading React 17 to React 18?"),
    ("versions", "Does Java 17 support records?", "Does Java 11 support records?", "Are records available in Java 17?"),
    ("versions", "How to upgrade from Angular 14 to 15?", "How to upgrade from Angular 15 to 16?", "Steps to migrate Angular 14 to Angular 15"),
    ("versions", "What changed in Kubernetes 1.25?", "What changed in Kubernetes 1.27?", "Kubernetes 1.25 changelog summary"),
    ("versions", "Is PostgreSQL 15 faster than 14?", "Is PostgreSQL 16 faster than 15?", "Performance of Postgres 15 vs 14?"),
    ("versions", "How do I use pattern matching in Python 3.10?", "How do I use pattern matching in Python 3.8?", "Python 3.10 match statement tutorial"),
    ("versions", "What is new in iOS 17?", "What is new in iOS 16?", "iOS 17 new features"),
    ("versions", "Install CUDA 11.8 with PyTorch", "Install CUDA 12.1 with PyTorch", "How do I set up PyTorch with CUDA 11.8?"),
    ("versions", "Migrate a project from Vue 2 to Vue 3", "Migrate a project from Vue 1 to Vue 2", "How to upgrade my app from Vue 2 to Vue 3"),
    ("versions", "Is TLS 1.2 still secure?", "Is TLS 1.0 still secure?", "Is TLS version 1.2 safe to use today?"),
    ("versions", "What does HTTP/2 improve over HTTP/1.1?", "What does HTTP/3 improve over HTTP/2?", "Advantages of HTTP/2 compared with HTTP/1.1"),
    ("versions", "Write a Dockerfile for Python 3.9 slim", "Write a Dockerfile for Python 3.12 slim", "Dockerfile using python:3.9-slim please"),
    # dates and years
    ("dates", "Who won the World Cup in 2018?", "Who won the World Cup in 2014?", "Which country won the 2018 World Cup?"),
    ("dates", "What were the biggest tech trends of 2021?", "What were the biggest tech trends of 2023?", "Top technology trends in 2021?"),
    ("dates", "Who was the US president in 1990?", "Who was the US president in 1980?", "In 1990, who was president of the United States?"),
    ("dates", "What happened in the stock market crash of 1929?", "What happened in the stock market crash of 1987?", "Explain the 1929 stock market crash."),
    ("dates", "Which movies won Oscars in 2020?", "Which movies won Oscars in 2010?", "2020 Oscar winning films?"),
    ("dates", "Is the weather in Lisbon nice in April?", "Is the weather in Lisbon nice in November?", "What's Lisbon's weather like in April?"),
    ("dates", "Plan a garden planting schedule for March.", "Plan a garden planting schedule for October.", "What should I plant in my garden in March?"),
    ("dates", "What was the inflation rate in 2022?", "What was the inflation rate in 2019?", "Inflation rate for 2022?"),
    ("dates", "Summarize the events of 1968.", "Summarize the events of 1989.", "What happened in 1968?"),
    ("dates", "When is the tax deadline in April 2024?", "When is the tax deadline in April 2025?", "What's the April 2024 tax filing deadline?"),
    ("dates", "Which phones were released in 2019?", "Which phones were released in 2016?", "Smartphones launched in 2019"),
    ("dates", "What is a good itinerary for Japan in December?", "What is a good itinerary for Japan in June?", "Suggest a Japan trip plan for December."),
    ("dates", "Who won the Nobel Prize in Physics in 2015?", "Who won the Nobel Prize in Physics in 2017?", "2015 Nobel physics laureates?"),
    ("dates", "What was the population of India in 2011?", "What was the population of India in 2001?", "India's population in 2011 census?"),
    # negation
    ("negation", "Can I eat eggs while pregnant?", "Why can't I eat eggs while pregnant?", "Is it safe to eat eggs during pregnancy?"),
    ("negation", "How to make coffee with sugar", "How to make coffee without sugar", "How do I make sweetened coffee with sugar?"),
    ("negation", "Why is my code working?", "Why is my code not working?", "What makes my code work?"),
    ("negation", "List foods that contain gluten.", "List foods that don't contain gluten.", "Which foods have gluten in them?"),
    ("negation", "Should I use a VPN on public wifi?", "Should I never use a VPN on public wifi?", "Is a VPN recommended on public Wi-Fi?"),
    ("negation", "Write a SQL query to find users with orders.", "Write a SQL query to find users without orders.", "SQL: select the users that have orders."),
    ("negation", "Which countries drive on the left?", "Which countries do not drive on the left?", "Countries that drive on the left side of the road?"),
    ("negation", "Is it safe to run with a cold?", "Is it not safe to run with a cold?", "Can I go running when I have a cold?"),
    ("negation", "Does my plant need direct sunlight?", "Does my plant need no direct sunlight?", "Should my plant be in direct sun?"),
    ("negation", "Why do cats purr when they are happy?", "Why do cats purr when they are not happy?", "What makes happy cats purr?"),
    ("negation", "How do I install packages with root access?", "How do I install packages without root access?", "Installing packages as root: how?"),
    ("negation", "Can dogs eat grapes?", "Why can dogs never eat grapes?", "Are grapes okay for dogs to eat?"),
    ("negation", "Recipes that use eggs", "Recipes that use no eggs", "Give me recipes with eggs."),
    ("negation", "Why does my phone charge?", "Why doesn't my phone charge?", "How does my phone charge?"),
    ("negation", "Is the function thread safe?", "Is the function not thread safe?", "Is this function safe to call from multiple threads?"),
    # entities
    ("entities", "What is the capital of Australia?", "What is the capital of Austria?", "Which city is Australia's capital?"),
    ("entities", "What is the population of Canada?", "What is the population of Mexico?", "How many people live in Canada?"),
    ("entities", "Who founded Microsoft?", "Who founded Apple?", "Who were the founders of Microsoft?"),
    ("entities", "Write a short biography of Marie Curie.", "Write a short biography of Ada Lovelace.", "Give me a brief bio of Marie Curie."),
    ("entities", "Best time to visit Japan?", "Best time to visit Korea?", "When should I travel to Japan?"),
    ("entities", "How do I reverse a list in Python?", "How do I reverse a list in JavaScript?", "Python: how can I reverse a list?"),
    ("entities", "What is the currency of Switzerland?", "What is the currency of Sweden?", "Which currency does Switzerland use?"),
    ("entities", "Explain the plot of Hamlet.", "Explain the plot of Macbeth.", "Summarize the story of Hamlet."),
    ("entities", "How tall is Mount Everest?", "How tall is Mount Kilimanjaro?", "What is the height of Mount Everest?"),
    ("entities", "What language is spoken in Brazil?", "What language is spoken in Argentina?", "Which language do people speak in Brazil?"),
    ("entities", "Compare Tesla and Ford stock.", "Compare Tesla and Toyota stock.", "Tesla vs Ford shares: how do they compare?"),
    ("entities", "How do I connect to MySQL from Java?", "How do I connect to MongoDB from Java?", "Java code to connect to a MySQL database"),
    ("entities", "What did Einstein discover?", "What did Newton discover?", "What were Einstein's discoveries?"),
    ("entities", "How do I deploy a Flask app on AWS?", "How do I deploy a Flask app on Azure?", "Deploying Flask to AWS: steps?"),
    ("entities", "What is the GDP of Germany?", "What is the GDP of France?", "Germany's gross domestic product?"),
    ("entities", "Translate 'good morning' into Spanish", "Translate 'good morning' into Italian", "How do you say 'good morning' in Spanish?"),
    ("entities", "Where was Shakespeare born?", "Where was Dickens born?", "What is Shakespeare's birthplace?"),
    ("entities", "How do I set up Docker on Windows?", "How do I set up Docker on Linux?", "Installing Docker on Windows"),
    ("entities", "Is London more expensive than Paris?", "Is London more expensive than Berlin?", "Is it costlier to live in London than in Paris?"),
    ("entities", "Summarize the history of the Roman Empire.", "Summarize the history of the Ottoman Empire.", "Give me an overview of the Roman Empire's history."),
    # order / swapped roles
    ("order", "Convert Celsius to Fahrenheit formula", "Convert Fahrenheit to Celsius formula", "Formula to convert from Celsius to Fahrenheit"),
    ("order", "Is Python faster than Java?", "Is Java faster than Python?", "Does Python run faster than Java?"),
    ("order", "Translate this from English to French: I love you", "Translate this from French to English: I love you", "English to French translation of 'I love you'"),
    ("order", "How do I migrate from MySQL to PostgreSQL?", "How do I migrate from PostgreSQL to MySQL?", "Moving a database from MySQL to PostgreSQL: how?"),
    ("order", "Convert USD to INR", "Convert INR to USD", "USD to INR conversion"),
    ("order", "Flight time from London to Tokyo?", "Flight time from Tokyo to London?", "How long is the flight from London to Tokyo?"),
    ("order", "Switching from Android to iPhone: what do I lose?", "Switching from iPhone to Android: what do I lose?", "What do I lose moving from Android to an iPhone?"),
    ("order", "Port this code from Python to Rust", "Port this code from Rust to Python", "Rewrite this Python code in Rust"),
    ("order", "Did Germany beat Brazil in 2014?", "Did Brazil beat Germany in 2014?", "In 2014, did Germany defeat Brazil?"),
    ("order", "How to convert a list to a tuple in Python", "How to convert a tuple to a list in Python", "Python: turn a list into a tuple"),
    ("order", "Convert kilometers to miles", "Convert miles to kilometers", "km to miles conversion"),
    ("order", "Is Amazon bigger than Google?", "Is Google bigger than Amazon?", "Is Amazon a bigger company than Google?"),
    # code identifiers
    ("identifiers", "What does os.path.join do?", "What does os.path.split do?", "Explain os.path.join in Python."),
    ("identifiers", "Difference between `useEffect` and `useLayoutEffect`?", "Difference between `useMemo` and `useCallback`?", "How is useEffect different from useLayoutEffect?"),
    ("identifiers", "How to use np.argsort?", "How to use np.argmax?", "Explain how np.argsort works."),
    ("identifiers", "Why does my_function return None?", "Why does my_other_function return None?", "my_function returns None, why?"),
    ("identifiers", "What does getElementById return?", "What does querySelector return?", "Return value of getElementById?"),
    ("identifiers", "How do I mock datetime.now in tests?", "How do I mock time.time in tests?", "Mocking datetime.now inside unit tests"),
    ("identifiers", "What is the difference between list.sort() and sorted()?", "What is the difference between list.reverse() and reversed()?", "list.sort() vs sorted(): what's the difference?"),
    ("identifiers", "Fix KeyError in df.loc", "Fix KeyError in df.iloc", "How to fix a KeyError with df.loc?"),
    ("identifiers", "How does torch.no_grad work?", "How does torch.enable_grad work?", "Explain torch.no_grad"),
    ("identifiers", "What is the default timeout of requests.get?", "What is the default timeout of requests.post?", "Default timeout for requests.get?"),
    ("identifiers", "Rename the column user_id to customer_id in pandas", "Rename the column user_name to customer_name in pandas", "pandas: rename user_id column to customer_id"),
    ("identifiers", "Why is `self.assertEqual` failing?", "Why is `self.assertTrue` failing?", "self.assertEqual keeps failing, why?"),
    ("identifiers", "What does Array.prototype.map return?", "What does Array.prototype.forEach return?", "Return value of Array.prototype.map"),
    ("identifiers", "Set max_tokens in the OpenAI API", "Set max_retries in the OpenAI API", "How do I set max_tokens for the OpenAI API?"),
    ("identifiers", "How to use asyncio.gather?", "How to use asyncio.wait?", "asyncio.gather usage example"),
    # quoted strings
    ("quoted", "What does 'ephemeral' mean?", "What does 'ethereal' mean?", "Define the word 'ephemeral'."),
    ("quoted", "Translate \"thank you very much\" to German", "Translate \"see you tomorrow\" to German", "How do you say \"thank you very much\" in German?"),
    ("quoted", "Fix the error \"list index out of range\"", "Fix the error \"list indices must be integers\"", "How to fix \"list index out of range\"?"),
    ("quoted", "What is the origin of the phrase \"break a leg\"?", "What is the origin of the phrase \"bite the bullet\"?", "Where does \"break a leg\" come from?"),
    ("quoted", "Is \"their\" or \"there\" correct here?", "Is \"affect\" or \"effect\" correct here?", "Which is right here, \"their\" or \"there\"?"),
    ("quoted", "Write a tagline for a bakery called \"Sweet Crumbs\"", "Write a tagline for a bakery called \"Daily Bread\"", "Slogan ideas for the bakery \"Sweet Crumbs\""),
    ("quoted", "What does the error 'permission denied' mean in Linux?", "What does the error 'command not found' mean in Linux?", "Linux 'permission denied' error meaning"),
    ("quoted", "Rhymes with 'orange'?", "Rhymes with 'purple'?", "What words rhyme with 'orange'?"),
    # question words
    ("question_word", "Why did the Roman Empire fall?", "When did the Roman Empire fall?", "What caused the fall of the Roman Empire?"),
    ("question_word", "How do vaccines work?", "Why do vaccines work?", "Explain how vaccines work."),
    ("question_word", "Where was the Declaration of Independence signed?", "When was the Declaration of Independence signed?", "In which city was the Declaration of Independence signed?"),
    ("question_word", "Who invented the telephone?", "When was the telephone invented?", "Who is credited with inventing the telephone?"),
    ("question_word", "How did World War I start?", "Why did World War I end?", "What started World War I?"),
    ("question_word", "When should I repot my plant?", "Why should I repot my plant?", "What is the right time to repot a plant?"),
    ("question_word", "Where do penguins live?", "How do penguins live?", "What habitats do penguins live in?"),
    ("question_word", "Why is the sky blue?", "When is the sky blue?", "What makes the sky blue?"),
    ("question_word", "How is cheese made?", "Where is cheese made?", "What is the process of making cheese?"),
    ("question_word", "Who wrote Pride and Prejudice?", "When was Pride and Prejudice written?", "Pride and Prejudice was written by whom?"),
    # different languages
    ("language", "How do I learn Python quickly?", "¿Cómo aprendo Python rápidamente?", "What's the fastest way to learn Python?"),
    ("language", "What is the capital of France?", "Quelle est la capitale de la France ?", "Which city is the capital of France?"),
    ("language", "How are you today?", "Wie geht es dir heute?", "How are you doing today?"),
    ("language", "Write a poem about the sea.", "Escribe un poema sobre el mar.", "Compose a poem about the ocean."),
    ("language", "What is machine learning?", "Was ist maschinelles Lernen?", "Can you explain what machine learning is?"),
    ("language", "Recommend a good book about history.", "Consiglia un buon libro di storia.", "Suggest a good history book."),
    ("language", "What time is it in Tokyo?", "Que horas são em Tóquio?", "What's the current time in Tokyo?"),
    ("language", "Explain photosynthesis simply.", "Объясни фотосинтез простыми словами.", "Give me a simple explanation of photosynthesis."),
    ("language", "Tell me a joke about programmers.", "Raconte-moi une blague sur les programmeurs.", "Tell me a programmer joke."),
    ("language", "What are the benefits of green tea?", "¿Cuáles son los beneficios del té verde?", "Why is green tea good for you?"),
]


def rows() -> list[dict]:
    """Return the suite: for each triple, its negative pair then its positive pair."""
    out = []
    for kind, prompt, near_miss, paraphrase in TRIPLES:
        out.append({"text_a": prompt, "text_b": near_miss, "label": 0, "kind": kind})
        out.append({"text_a": prompt, "text_b": paraphrase, "label": 1, "kind": kind})
    return out


def main() -> None:
    data = rows()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data))
    print(f"wrote {len(data)} pairs to {OUT}")


if __name__ == "__main__":
    main()
