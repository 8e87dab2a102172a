// A broken attribute is reported once: the entity keeps its column constants
// and finders, so code using them elsewhere adds no error of its own.
use reposmith::{Repository, Result};
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongoo")]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    slug: String,
    #[repo(index)]
    title: String,
}

#[allow(dead_code)]
async fn uses(repo: &impl Repository<Document>) -> Result<()> {
    let _intros = repo.find(Document::TITLE.eq("Intro")).await?;
    let _one = repo.find_by_slug("intro").await?;
    let _all = repo.find_all_by_title("Intro").await?;
    Ok(())
}

fn main() {}
